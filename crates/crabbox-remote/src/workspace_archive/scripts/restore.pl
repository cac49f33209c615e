# Applies or discards the staging directory of a restore, or describes the workdir for a dry run
# (workspace_archive/restore.rs). The stage sits next to the workdir, so every change is a rename
# within one file system: no second copy of the data.
#   probe <workdir>                 prints "dir <entries>", "other 1" or "none 0"
#   clear <stage> <workdir> <old>   swaps the stage in for the workdir, then removes the old one
#   merge <stage> <workdir>         moves the stage's entries over the workdir's, then removes it
#   discard <stage>                 removes the stage
use strict;
use File::Path qw(remove_tree);

sub fail { print STDERR "crabbox: $_[0]: $!\n"; exit 1; }
sub kind { return 'none' unless lstat($_[0]); return -d _ ? 'dir' : 'other'; }
sub names {
    my ($dir) = @_;
    opendir(my $dh, $dir) or fail("cannot read $dir");
    my @names = grep { $_ ne '.' && $_ ne '..' } readdir($dh);
    closedir($dh);
    return @names;
}
sub remove {
    my ($path) = @_;
    my $kind = kind($path);
    if ($kind eq 'dir') {
        # remove_tree also makes read-only directories writable on its way.
        remove_tree($path, { error => \my $errors });
        fail("cannot remove $path") if @$errors;
    } elsif ($kind eq 'other') {
        unlink($path) or fail("cannot remove $path");
    }
}

# Moves the entries of directory $src over those of directory $dst: a directory merges into a
# directory; anything else replaces what is there (a directory in its way is removed first). $dst
# ends with $src's mode and times, as tar would have left it.
sub merge {
    my ($src, $dst) = @_;
    my @st = stat($src);
    # Entries move out of $src and into $dst: both must be writable while they do.
    chmod(($st[2] & 07777) | 0700, $src);
    chmod(((stat $dst)[2] & 07777) | 0700, $dst);
    for my $name (names($src)) {
        my ($s, $d) = ("$src/$name", "$dst/$name");
        my ($sk, $dk) = (kind($s), kind($d));
        if ($sk eq 'dir' && $dk eq 'dir') {
            merge($s, $d);
            next;
        }
        remove($d) if $dk eq 'dir' || ($sk eq 'dir' && $dk eq 'other');
        rename($s, $d) or fail("cannot move $s to $d");
    }
    chmod($st[2] & 07777, $dst) or fail("cannot set the mode of $dst");
    utime($st[8], $st[9], $dst);
    rmdir($src) or fail("cannot remove $src");
}

my $command = shift @ARGV;
if ($command eq 'probe') {
    my ($wd) = @ARGV;
    if (-d $wd) { print "dir ", scalar(names($wd)), "\n"; }
    elsif (kind($wd) eq 'other') { print "other 1\n"; }
    else { print "none 0\n"; }
} elsif ($command eq 'clear') {
    my ($stage, $wd, $old) = @ARGV;
    my $had = kind($wd) ne 'none';
    if ($had) { rename($wd, $old) or fail("cannot move $wd aside"); }
    if (!rename($stage, $wd)) {
        my $why = $!;
        rename($old, $wd) if $had;
        $! = $why;
        fail("cannot move $stage to $wd");
    }
    remove($old) if $had;
} elsif ($command eq 'merge') {
    my ($stage, $wd) = @ARGV;
    if (-d $wd) {
        merge($stage, $wd);
    } else {
        remove($wd);
        rename($stage, $wd) or fail("cannot move $stage to $wd");
    }
} elsif ($command eq 'discard') {
    remove($ARGV[0]);
} else {
    print STDERR "crabbox: unknown command $command\n";
    exit 2;
}
