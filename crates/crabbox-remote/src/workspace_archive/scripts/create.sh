# Streams a workdir as a tar archive on stdout, compressed with zstd when the runner has it
# (workspace_archive/create.rs tells which from the first bytes and compresses a plain tar).
# Args: <workdir> <tar option>... (the excludes). Exit 72: the workdir does not exist.
set -u -o pipefail
wd=$1
shift
PATH=$PATH:/usr/local/bin:/opt/homebrew/bin
if [ ! -d "$wd" ]; then
    echo "crabbox: workdir $wd does not exist" >&2
    exit 72
fi
if command -v zstd >/dev/null 2>&1; then
    tar -C "$wd" -cf - "$@" . | zstd -q -T0 -3 -c
    status=("${PIPESTATUS[@]}")
else
    tar -C "$wd" -cf - "$@" .
    status=("$?" 0)
fi
# GNU tar exits 1 when a file changed while it was read: the archive is complete all the same.
if [ "${status[0]}" = 1 ] && tar --version 2>/dev/null | grep -q GNU; then
    status[0]=0
fi
if [ "${status[0]}" != 0 ]; then
    exit "${status[0]}"
fi
exit "${status[1]}"
