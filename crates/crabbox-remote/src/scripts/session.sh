# crabbox session: runs on the runner as ONE remote exec per `crabbox run`.
# It takes the lease's run lock, compares the sync fingerprint, receives a sync when needed
# (manifest over stdin, files over a parallel rsync on the same SSH connection), then runs the
# command with stdin from /dev/null. Its own stdin stays open as a lifeline: EOF means the
# client went away or was interrupted, and the command's process group is killed.
# Protocol lines go to stdout before the command starts: "@@crabbox@@ <word> [args]".
set -u
workdir=$1 meta=$2 lock=$3 lock_wait=$4 mode=$5 flags=$6 helper=$7
shift 7
proto() { printf '@@crabbox@@ %s\n' "$*"; }
fail() { proto "error $1 ${2// /_}"; printf 'crabbox: %s\n' "$2" >&2; exit "$3"; }

mkdir -p -- "${lock%/*}" 2>/dev/null || fail remote "could not create ${lock%/*}" 7

# The run lock covers sync and command together, so two runs on one lease never interleave a
# sync with a command (the other run would execute the wrong revision).
exec 9>>"$lock"
if command -v flock >/dev/null 2>&1; then
  if ! flock -n 9; then
    proto waiting
    printf 'crabbox: another run holds this lease; waiting up to %ss\n' "$lock_wait" >&2
    flock -w "$lock_wait" 9 || fail locked "lease busy: another run still holds the lock after ${lock_wait}s" 75
  fi
else
  waited=0
  until mkdir "$lock.d" 2>/dev/null; do
    owner=$(cat "$lock.d/pid" 2>/dev/null)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then rm -rf "$lock.d"; continue; fi
    [ "$waited" -ge "$lock_wait" ] && fail locked "lease busy: another run still holds the lock after ${lock_wait}s" 75
    [ "$waited" = 0 ] && { proto waiting; printf 'crabbox: another run holds this lease; waiting\n' >&2; }
    sleep 1; waited=$((waited + 1))
  done
  echo $$ >"$lock.d/pid"
  trap 'rm -rf "$lock.d"' EXIT
fi

case "$flags" in *full-resync*)
  rm -rf -- "$workdir" 2>/dev/null || fail remote "could not clear $workdir" 7 ;;
esac
mkdir -p -- "$workdir" "$meta" 2>/dev/null || fail remote "could not create $workdir" 7
cd -- "$workdir" || fail remote "could not enter $workdir" 7

# The client computes its fingerprint while this connection starts and sends it as the first
# line on stdin (empty: always sync).
IFS= read -r want_fp || fail sync "client went away before sending its fingerprint" 6
# Forwarded environment: NUL-separated K=V entries ending with an empty one. It travels on
# stdin, not in argv, so values never show up in process listings on either side.
envs=()
while IFS= read -r -d '' kv; do [ -z "$kv" ] && break; envs+=("$kv"); done
have_fp=$(cat "$meta/sync-fingerprint" 2>/dev/null)
case "$flags" in *git*) [ -f .git/HEAD ] || git init -q . >/dev/null 2>&1 ;; esac
case "$flags" in *no-sync*) nosync=1 ;; *) nosync= ;; esac
if [ -n "$nosync" ]; then
  proto skipped no-sync
elif [ -n "$want_fp" ] && [ "$have_fp" = "$want_fp" ]; then
  proto skipped unchanged
else
  rm -f "$meta/sync-fingerprint"
  pushed=$(cat "$meta/git-pushed" 2>/dev/null)
  proto sync "${pushed:--}" "${have_fp:--}"
  # Frame: "<full|delta> <list bytes> <removed bytes> <tar bytes>\n", both NUL lists, a tar.
  IFS=' ' read -r smode mlen dlen tlen || fail sync "sync manifest header missing" 6
  perl -e "$helper" -- receive "$meta" "$smode" "$mlen" "$dlen" "$tlen" "$flags" || fail sync "could not apply sync manifest (see stderr)" 66
  proto ready
  IFS=' ' read -r verb head index_commit branch upstream seed_key || fail sync "client went away during sync" 6
  [ "$verb" = synced ] || fail sync "sync aborted by client" 6
  if [ "$head" != - ]; then
    git update-ref --no-deref HEAD "$head" 2>/dev/null
    if [ "$branch" != - ]; then
      git update-ref "refs/heads/$branch" "$head" && git symbolic-ref HEAD "refs/heads/$branch"
      if [ "$upstream" != - ]; then
        git config "branch.$branch.remote" origin && git config "branch.$branch.merge" "refs/heads/$upstream"
      fi
    fi
    # Reading a tree drops the index's stat data, after which the next `git status` on the
    # runner re-reads every file (seconds on a large tree): an index that already holds the
    # tree is left alone, and `-m` keeps the stat data of unchanged entries otherwise.
    tree=${index_commit/#-/$head}
    want=$(git rev-parse -q --verify "$tree^{tree}" 2>/dev/null)
    if [ -z "$want" ] || [ "$(git write-tree 2>/dev/null)" != "$want" ]; then
      git read-tree -m "$tree" 2>/dev/null || git read-tree "$tree" 2>/dev/null \
        || git read-tree "$head" 2>/dev/null || true
    fi
    printf '%s' "${seed_key:--}" >"$meta/git-pushed"
  fi
  # Cache the login environment once per workdir (and on --full-resync) so runs need no
  # login shell; a login shell costs a profile read on every exec.
  if [ ! -f "$meta/login-env" ]; then
    bash -lc 'cd /; for v in $(compgen -e); do case $v in PWD|OLDPWD|SHLVL|_|SSH_*|BASH_*|SHELLOPTS|BASHOPTS|TERM) continue;; esac; printf "export %s=%q\n" "$v" "${!v}"; done' </dev/null >"$meta/login-env.new" 2>/dev/null \
      && mv -f "$meta/login-env.new" "$meta/login-env"
  fi
  [ -n "$want_fp" ] && printf '%s' "$want_fp" >"$meta/sync-fingerprint"
  # Let the (coarse) file clock tick past the files just written, so the post-command check
  # does not mistake them for changes made by the command.
  sleep 0.02
  proto synced
fi

case "$flags" in *sync-only*) proto done; exit 0 ;; esac

[ -f "$meta/login-env" ] && . "$meta/login-env"
export SHLVL=1
cd -- "$workdir" || fail remote "could not enter $workdir" 7
for kv in "${envs[@]}"; do export "$kv"; done
# Files the command changes get a ctime after this stamp; `verify` uses it when the launcher
# cannot vouch for the tree.
: >"$meta/cmd-stamp"
proto exec
# The launcher (perl, see the helper) starts the command in a process group of its own so the
# lifeline can kill everything it started, watches the synced directories while it runs, and
# exits with its status. Neither keeps the lock descriptor: a daemon the command leaves behind
# must not hold the lease.
if [ "$mode" = shell ]; then set -- bash -c "$1"; fi
perl -e "$helper" -- launch "$meta" "$@" 9>&-
rc=$?
# Unless the launcher saw the command leave every synced file alone (cmd-clean) or already
# dropped the fingerprint, check by ctime in the background (still holding the lock, detached
# from this session so the client returns at once) and drop the fingerprint when anything
# changed, so the next run re-syncs and restores the local version.
if [ -f "$meta/sync-fingerprint" ] && [ ! -f "$meta/cmd-clean" ]; then
  ( nice -n 19 perl -e "$helper" -- verify "$meta" || rm -f "$meta/sync-fingerprint" ) </dev/null >/dev/null 2>&1 &
fi
exit "$rc"
