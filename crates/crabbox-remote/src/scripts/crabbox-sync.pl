# crabbox sync helper (perl: present on every Linux and macOS runner). Passed to the runner with
# each session and run by the session script.
#
# The runner keeps what Crabbox synced as `sync-manifest` (NUL list, written by a full sync)
# plus `sync-manifest.log` (appended by delta syncs: "+path\0" upserts, "-path\0" removals), so
# a one-file change never rewrites a 100k-entry list. `sync-dirs` (NUL list) holds "." and every
# directory above a synced path: the directories `launch` watches while the command runs.
#
# No `use warnings` and no modules on the launch path: on our runners each module perl loads
# costs 1-5 ms, paid by every warm run.
use strict;
my ($cmd, $meta) = (shift, shift);

sub read_exact { my ($n) = @_; my $buf = ''; while (length($buf) < $n) {
    my $r = sysread(STDIN, $buf, $n - length($buf), length($buf));
    die "short read\n" unless $r; } return $buf; }
sub split_nul { return grep { length } split /\0/, ($_[0] // ''); }
sub slurp { my ($path) = @_; open(my $fh, '<', $path) or return ''; local $/; my $d = <$fh> // ''; close $fh; return $d; }
sub write_file { my ($path, $data) = @_; open(my $fh, '>', "$path.tmp") or die "write $path: $!\n";
    print $fh $data; close $fh or die "write $path: $!\n"; rename("$path.tmp", $path) or die "rename $path: $!\n"; }
sub synced_paths {
    my %set = map { $_ => 1 } split_nul(slurp("$meta/sync-manifest"));
    for my $e (split_nul(slurp("$meta/sync-manifest.log"))) {
        my ($op, $p) = (substr($e, 0, 1), substr($e, 1));
        if ($op eq '+') { $set{$p} = 1 } else { delete $set{$p} }
    }
    return \%set;
}
# Adds every directory above each path to %$set. A directory seen before has its ancestors in
# the set already, so each path costs only its new directories.
sub add_dirs { my ($set, @paths) = @_;
    for my $p (@paths) { my $d = $p; while ((my $i = rindex($d, '/')) > 0) { $d = substr($d, 0, $i); last if $set->{$d}++; } } }
sub write_dirs { my (%set) = @_; write_file("$meta/sync-dirs", join('', map { "$_\0" } '.', sort keys %set)); }
sub safe { my ($p) = @_; return !($p =~ m{(^|/)\.\.(/|$)} || $p =~ m{^/} || $p =~ m{^\.git(/|$)}); }
sub remove_paths {
    my %dirs;
    for my $p (@_) {
        next unless safe($p);
        if (-l $p || -e _) { unlink($p) or warn "crabbox: could not remove $p: $!\n"; }
        my $d = $p; while ($d =~ s{/[^/]+$}{}) { $dirs{$d} = 1; }
    }
    rmdir $_ for sort { length($b) <=> length($a) } keys %dirs;
}
sub guard {
    my ($flags, @prune) = @_;
    return if @prune < 200 || $flags =~ /allow-mass-deletions/;
    print STDERR "crabbox: refusing to delete " . scalar(@prune) . " previously synced paths on the runner (mass-deletion guard, limit 200)\n";
    print STDERR "  $_\n" for @prune[0 .. 19];
    print STDERR "hint: if this is intended, rerun with CRABBOX_ALLOW_MASS_DELETIONS=1\n";
    exit 66;
}

sub receive {
    my ($mode, $mlen, $dlen, $tlen, $flags) = @_;
    my $list = read_exact($mlen); my $removed = $dlen ? read_exact($dlen) : '';
    if ($mode eq 'full') {
        my %keep = map { $_ => 1 } split_nul($list);
        my @prune = grep { !$keep{$_} } keys %{ synced_paths() };
        push @prune, grep { !$keep{$_} } split_nul($removed) if $flags =~ /full-resync/;
        guard($flags, @prune);
        remove_paths(@prune);
        write_file("$meta/sync-manifest", $list);
        unlink("$meta/sync-manifest.log");
        my %dirs; add_dirs(\%dirs, keys %keep); write_dirs(%dirs);
        printf STDERR "crabbox: pruned %d path(s)\n", scalar(@prune) if @prune;
    } else {
        my @added = split_nul($list); my @gone = split_nul($removed);
        guard($flags, @gone);
        remove_paths(@gone);
        open(my $log, '>>', "$meta/sync-manifest.log") or die "append manifest log: $!\n";
        # Parenthesised: a bare `map` takes the whole list after it, which once logged every
        # removal as an upsert of "-path".
        print $log join('', (map { "+$_\0" } @added), (map { "-$_\0" } @gone));
        close $log or die "append manifest log: $!\n";
        # A runner synced before `sync-dirs` existed has none: `verify` rebuilds it from the
        # whole synced set, which a delta does not carry.
        if (-e "$meta/sync-dirs") {
            my %dirs = map { $_ => 1 } split_nul(slurp("$meta/sync-dirs"));
            my %emptied; add_dirs(\%emptied, @gone);
            delete @dirs{ grep { !-d $_ } keys %emptied };
            add_dirs(\%dirs, @added);
            delete $dirs{'.'};
            write_dirs(%dirs);
        }
    }
    if ($tlen) {
        open(my $tar, '|-', 'tar', '-xf', '-') or die "tar: $!\n";
        binmode $tar;
        my $left = $tlen;
        while ($left > 0) {
            my $chunk = read_exact($left > 65536 ? 65536 : $left);
            print $tar $chunk; $left -= length($chunk);
        }
        close $tar or die "tar -x failed\n";
    }
}

# Exit 1 when any synced path is missing or was changed (ctime) since the command started.
# Without delta log entries the base list is the set: no hash of 100k keys to build.
sub verify {
    require Time::HiRes;
    my @stamp = Time::HiRes::stat("$meta/cmd-stamp") or exit 1;
    my $since = $stamp[9];
    my @paths = -e "$meta/sync-manifest.log" ? keys %{ synced_paths() }
        : split_nul(slurp("$meta/sync-manifest"));
    if (!-e "$meta/sync-dirs") { my %dirs; add_dirs(\%dirs, @paths); write_dirs(%dirs); }
    for my $p (@paths) {
        my @s = Time::HiRes::lstat($p) or exit 1;
        exit 1 if $s[10] >= $since;
    }
}

# --- launch: runs the command and tracks what it changes ---------------------------------------
#
# `launch ARGV…` starts the command in a process group of its own (stdin /dev/null, default
# signal dispositions) and exits with its status (128+N when signal N killed it). A lifeline
# process reads the session's stdin: EOF (Ctrl-C, or the client died) kills the command's group.
#
# When the tree is as synced (a fingerprint is stored), the launcher first watches every
# `sync-dirs` directory with inotify and, after the command, decides from the events alone:
#   no event names a synced path or directory  -> writes `cmd-clean`: the tree is as synced;
#   an event names one                         -> removes the fingerprint: the next run re-syncs;
#   anything it cannot vouch for               -> neither: the session falls back to `verify`.

# inotify_event masks (linux/inotify.h).
my ($IN_MODIFY, $IN_ATTRIB, $IN_MOVED_FROM, $IN_MOVED_TO, $IN_CREATE, $IN_DELETE) = (0x2, 0x4, 0x40, 0x80, 0x100, 0x200);
my ($IN_DELETE_SELF, $IN_MOVE_SELF, $IN_UNMOUNT, $IN_Q_OVERFLOW, $IN_IGNORED) = (0x400, 0x800, 0x2000, 0x4000, 0x8000);
my ($IN_ONLYDIR, $IN_DONT_FOLLOW, $IN_NONBLOCK, $IN_CLOEXEC) = (0x1000000, 0x2000000, 0x800, 0x80000);
my $WATCH_MASK = $IN_MODIFY | $IN_ATTRIB | $IN_MOVED_FROM | $IN_MOVED_TO | $IN_CREATE | $IN_DELETE
    | $IN_DELETE_SELF | $IN_MOVE_SELF | $IN_ONLYDIR | $IN_DONT_FOLLOW;
my $UNSURE_MASK = $IN_DELETE_SELF | $IN_MOVE_SELF | $IN_UNMOUNT | $IN_Q_OVERFLOW | $IN_IGNORED;
# Unsynced names touched beyond this are not checked one by one (one pass over the synced list
# costs ~10 ms at 100k paths with a few hundred names): the session falls back to `verify`.
my $MAX_NAMES = 1000;

# The (inotify_init1, inotify_add_watch) syscall numbers for this perl's own ABI, read from its
# ELF header: 64-bit little-endian x86_64 or aarch64. Anything else gets no watcher. (Config.pm
# would name the architecture too, but loading it costs more than the rest of the launcher.)
sub inotify_syscalls {
    return () unless $^O eq 'linux';
    open(my $exe, '<', '/proc/self/exe') or return ();
    (sysread($exe, my $elf, 20) // 0) == 20 or return ();
    return () unless substr($elf, 0, 6) eq "\x7fELF\x02\x01";
    my $machine = unpack('v', substr($elf, 18, 2));
    return $machine == 62 ? (294, 254) : $machine == 183 ? (26, 27) : ();
}

# Watches every synced directory. Returns the watch state, or undef with no watcher at all.
sub watch_synced_dirs {
    my $w = { dir => {}, is_dir => {}, names => {}, changed => 0, unsure => 0 };
    my @dirs = split_nul(slurp("$meta/sync-dirs"));
    my ($init, $add) = inotify_syscalls();
    return undef unless @dirs && $init;
    my $fd = syscall($init, $IN_NONBLOCK | $IN_CLOEXEC);
    return undef if $fd < 0 || !open($w->{fh}, '<&=', $fd);
    for my $d (@dirs) {
        my $wd = syscall($add, $fd, $d, $WATCH_MASK);
        if ($wd < 0) {
            # A synced directory that is gone (or no longer a directory) since the sync: let
            # `verify` decide, and rebuild the list from the synced set while it is at it.
            unlink("$meta/sync-dirs") if $! == 2 || $! == 20;    # ENOENT, ENOTDIR
            $w->{unsure} = 1;
            last;
        }
        $w->{dir}{$wd} = $d;
        $w->{is_dir}{$d} = 1;
    }
    return $w;
}

# Reads every queued event. inotify queues an event in the system call that made the change, so
# once the command has been reaped every change it made is in the queue.
sub drain_events {
    my ($w) = @_;
    while ((sysread($w->{fh}, my $buf, 65536) // 0) > 0) {
        for (my $at = 0; $at + 16 <= length($buf);) {
            my ($wd, $mask, undef, $len) = unpack('lLLL', substr($buf, $at, 16));
            my $name = unpack('Z*', substr($buf, $at + 16, $len));
            $at += 16 + $len;
            my $dir = $w->{dir}{$wd};
            if (($mask & $UNSURE_MASK) || !defined $dir) { $w->{unsure} = 1; next; }
            # No name: the metadata of a synced directory itself changed.
            if ($name eq '') { $w->{changed} = 1; next; }
            my $path = $dir eq '.' ? $name : "$dir/$name";
            if ($w->{is_dir}{$path}) { $w->{changed} = 1; }
            elsif (keys %{ $w->{names} } < $MAX_NAMES) { $w->{names}{$path} = 1; }
            else { $w->{unsure} = 1; }
        }
    }
}

# Whether any of the names is a synced path, in the base list or added by the delta log. A name
# removed by the log still counts: a false "changed" only costs a re-sync.
sub any_synced {
    my $names = join '|', map { quotemeta } @_;
    return 1 if ("\0" . slurp("$meta/sync-manifest")) =~ /\0(?:$names)\0/;
    return ("\0" . slurp("$meta/sync-manifest.log")) =~ /\0\+(?:$names)\0/;
}

# 'clean', 'changed' or 'unsure', from the events of the command that just ended.
sub verdict {
    my ($w) = @_;
    drain_events($w);
    return 'changed' if $w->{changed};
    return 'unsure' if $w->{unsure};
    my @names = keys %{ $w->{names} };
    return 'clean' unless @names;
    return 'changed' if any_synced(@names);
    # Another name for a synced file (a hard link) reports writes under its own name: a touched
    # regular file with more than one link could be one.
    for my $p (@names) { my @s = lstat($p); return 'unsure' if @s && -f _ && $s[3] > 1; }
    return 'clean';
}

sub launch {
    my @argv = @_;
    unlink("$meta/cmd-clean");
    my $w = -e "$meta/sync-fingerprint" ? watch_synced_dirs() : undef;
    release_keepers();
    my $pid = fork;
    if (!defined $pid) { print STDERR "crabbox: cannot run $argv[0]: $!\n"; exit 126; }
    if (!$pid) {
        setpgrp(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT QUIT TERM HUP PIPE ALRM USR1 USR2 CHLD TSTP TTIN TTOU);
        open(STDIN, '<', '/dev/null');
        exec { $argv[0] } @argv;
        my $code = $! == 2 ? 127 : 126;    # ENOENT; %! would load Errno on every run
        print STDERR "crabbox: cannot run $argv[0]: $!\n";
        exit $code;
    }
    # Also here, so the lifeline never signals a group the child has not created yet.
    setpgrp($pid, $pid);
    pipe(my $alive, my $alive_w) or die "pipe: $!\n";
    my $lifeline = lifeline($pid, $alive, $alive_w, $w);
    close $alive;
    waitpid($pid, 0);
    my $status = $?;
    if ($w) {
        my $verdict = verdict($w);
        if ($verdict eq 'clean') { open(my $marker, '>', "$meta/cmd-clean"); }
        elsif ($verdict eq 'changed') { unlink("$meta/sync-fingerprint"); }
        if ($lifeline) { open(my $keep, '>', "$meta/watch-keeper.$lifeline"); }
        # Now, while the lifeline still holds the instance: left to exit, perl may close the
        # lifeline's pipe first, and the lifeline's exit would leave the teardown to us.
        close $w->{fh};
    }
    exit(($status & 127) ? 128 + ($status & 127) : $status >> 8);
}

# Forks the lifeline and returns its pid. It waits for EOF on the session's stdin (then TERM to
# the command's group, KILL 3 s later) or for the launcher to exit (the read end of `alive` sees
# EOF), and then keeps the watches (below). It holds the last reference to the inotify instance,
# so the kernel's teardown of the watches (10-25 ms here) happens off the run's path.
sub lifeline {
    my ($pid, $alive, $alive_w, $w) = @_;
    my $lifeline = fork;
    return $lifeline if !defined $lifeline || $lifeline;
    close $alive_w;
    open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null');
    my $watch = ''; vec($watch, fileno($alive), 1) = 1;
    my $both = $watch; vec($both, 0, 1) = 1;
    while (1) {
        next if select(my $ready = $both, undef, undef, undef) < 0;
        if (vec($ready, fileno($alive), 1)) { keep() if $w; exit 0; }
        last unless sysread(STDIN, my $buf, 4096);
    }
    kill 'TERM', -$pid;
    exit 0 if select(my $ready = $watch, undef, undef, 3) > 0;
    kill 'KILL', -$pid;
    exit 0;
}

# The first watch on a directory that reports events on its entries makes the kernel flag every
# cached entry of it (~70 ns each here: ~8 ms for the directories of 100k files); while another
# instance watches the same directories, that is done and a watch costs ~1 us. So the lifeline
# of a run that watched stays on, as "crabbox watch keeper" (stdio on /dev/null, no lock),
# until the next run's launcher has its own watches in place and removes `watch-keeper.<pid>`,
# the workdir goes, or 5 minutes pass.
sub keep {
    $0 = 'crabbox watch keeper';
    open(STDIN, '<', '/dev/null');
    my $until = time + 300;
    select(undef, undef, undef, 0.25) while time < $until && -e "$meta/watch-keeper.$$";
    unlink("$meta/watch-keeper.$$");
}
sub release_keepers {
    opendir(my $dir, $meta) or return;
    unlink(map { "$meta/$_" } grep { /^watch-keeper\.\d+$/ } readdir($dir));
}

if ($cmd eq 'receive') { receive(@ARGV); }
elsif ($cmd eq 'verify') { verify(); }
elsif ($cmd eq 'launch') { launch(@ARGV); }
else { die "unknown command $cmd\n"; }
