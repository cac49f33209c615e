# Extracts a workspace archive from stdin into a new staging directory next to the workdir
# (workspace_archive/receive.rs). The stage is removed again if anything fails.
# Args: <stage>. Protocol: prints "crabbox-ready zstd" or "crabbox-ready plain" (whether zstd is
# installed here), then reads one line naming the stream that follows (zst, gz or tar).
set -eu -o pipefail
stage=$1
PATH=$PATH:/usr/local/bin:/opt/homebrew/bin
discard() {
    chmod -R u+w -- "$stage" 2>/dev/null || true
    rm -rf -- "$stage"
}
mkdir -p -- "$(dirname -- "$stage")"
mkdir -m 700 -- "$stage"
trap discard EXIT
if command -v zstd >/dev/null 2>&1; then
    echo "crabbox-ready zstd"
else
    echo "crabbox-ready plain"
fi
IFS= read -r stream
# The lease's logs, captures and run records are its own: an old archive's are left out.
extract() {
    tar -x -p --no-same-owner -C "$stage" -f - \
        --exclude=.crabbox/logs --exclude=.crabbox/captures --exclude=.crabbox/runs "$@"
}
case $stream in
    zst) zstd -d -q -c | extract ;;
    gz) extract -z ;;
    tar) extract ;;
    *)
        echo "crabbox: unknown archive stream '$stream'" >&2
        exit 2
        ;;
esac
trap - EXIT
