# crabbox sync helper (perl: present on every Linux and macOS runner). Passed to the runner with
# each session and run by the session script.
#
# The runner keeps what Crabbox synced as `sync-manifest` (NUL list, written by a full sync)
# plus `sync-manifest.log` (appended by delta syncs: "+path\0" upserts, "-path\0" removals), so
# a one-file change never rewrites a 100k-entry list.
use strict; use warnings;
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

if ($cmd eq 'receive') {
    my ($mode, $mlen, $dlen, $tlen, $flags) = @ARGV;
    my $list = read_exact($mlen); my $removed = $dlen ? read_exact($dlen) : '';
    if ($mode eq 'full') {
        my %keep = map { $_ => 1 } split_nul($list);
        my @prune = grep { !$keep{$_} } keys %{ synced_paths() };
        push @prune, grep { !$keep{$_} } split_nul($removed) if $flags =~ /full-resync/;
        guard($flags, @prune);
        remove_paths(@prune);
        write_file("$meta/sync-manifest", $list);
        unlink("$meta/sync-manifest.log");
        printf STDERR "crabbox: pruned %d path(s)\n", scalar(@prune) if @prune;
    } else {
        my @gone = split_nul($removed);
        guard($flags, @gone);
        remove_paths(@gone);
        open(my $log, '>>', "$meta/sync-manifest.log") or die "append manifest log: $!\n";
        print $log join('', map { "+$_\0" } split_nul($list), map { "-$_\0" } @gone);
        close $log or die "append manifest log: $!\n";
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
} elsif ($cmd eq 'verify') {
    # Exit 1 when any synced path is missing or was changed (ctime) since the command started.
    # Without delta log entries the base list is the set: no hash of 100k keys to build.
    require Time::HiRes;
    my @stamp = Time::HiRes::stat("$meta/cmd-stamp") or exit 1;
    my $since = $stamp[9];
    my @paths = -e "$meta/sync-manifest.log" ? keys %{ synced_paths() }
        : split_nul(slurp("$meta/sync-manifest"));
    for my $p (@paths) {
        my @s = Time::HiRes::lstat($p) or exit 1;
        exit 1 if $s[10] >= $since;
    }
} else { die "unknown command $cmd\n"; }
