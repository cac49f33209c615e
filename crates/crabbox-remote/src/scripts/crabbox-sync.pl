# crabbox sync helper (perl: present on every Linux and macOS runner). Installed next to the
# per-workdir meta directories by crabbox; invoked by the session script.
use strict; use warnings;
my ($cmd, $meta) = (shift, shift);

sub read_exact { my ($n) = @_; my $buf = ''; while (length($buf) < $n) {
    my $r = sysread(STDIN, $buf, $n - length($buf), length($buf));
    die "short read\n" unless $r; } return $buf; }
sub nul_list { my ($path) = @_; open(my $fh, '<', $path) or return (); local $/; my $d = <$fh> // '';
    close $fh; return grep { length } split /\0/, $d; }
sub write_file { my ($path, $data) = @_; open(my $fh, '>', "$path.tmp") or die "write $path: $!\n";
    print $fh $data; close $fh or die "write $path: $!\n"; rename("$path.tmp", $path) or die "rename $path: $!\n"; }
sub snapshot_digest { my @paths = nul_list("$meta/sync-manifest"); my $acc = '';
    require Digest::MD5; my $md5 = Digest::MD5->new;
    for my $p (@paths) { my @s = lstat($p); $md5->add(@s ? "$p\0$s[7]\0$s[9]\0$s[10]\0$s[1]\0$s[2]\n" : "$p\0missing\n"); }
    return $md5->hexdigest; }

if ($cmd eq 'receive') {
    my ($mlen, $dlen, $flags) = @ARGV;
    my $manifest = read_exact($mlen); my $deleted = $dlen ? read_exact($dlen) : '';
    my %keep = map { $_ => 1 } grep { length } split /\0/, $manifest;
    my @prune = grep { !$keep{$_} } nul_list("$meta/sync-manifest");
    push @prune, grep { length && !$keep{$_} } split /\0/, $deleted if $flags =~ /full-resync/;
    my $allow = $flags =~ /allow-mass-deletions/;
    if (@prune >= 200 && !$allow) {
        my @show = @prune[0 .. 19];
        print STDERR "crabbox: refusing to delete " . scalar(@prune) . " previously synced paths on the runner (mass-deletion guard, limit 200)\n";
        print STDERR "  $_\n" for @show;
        print STDERR "hint: if this is intended, rerun with CRABBOX_ALLOW_MASS_DELETIONS=1\n";
        exit 66;
    }
    my %dirs;
    for my $p (@prune) {
        next if $p =~ m{(^|/)\.\.(/|$)} || $p =~ m{^/} || $p =~ m{^\.git(/|$)};
        if (-l $p || -e _) { unlink($p) or warn "crabbox: could not remove $p: $!\n"; }
        my $d = $p; while ($d =~ s{/[^/]+$}{}) { $dirs{$d} = 1; }
    }
    rmdir $_ for sort { length($b) <=> length($a) } keys %dirs;
    write_file("$meta/sync-manifest", $manifest);
    printf STDERR "crabbox: pruned %d path(s)\n", scalar(@prune) if @prune;
} elsif ($cmd eq 'snapshot') {
    write_file("$meta/stat-snapshot", snapshot_digest());
} elsif ($cmd eq 'verify') {
    open(my $fh, '<', "$meta/stat-snapshot") or exit 1; my $want = <$fh> // ''; close $fh;
    exit(snapshot_digest() eq $want ? 0 : 1);
} else { die "unknown command $cmd\n"; }
