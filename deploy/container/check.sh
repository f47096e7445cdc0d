#!/usr/bin/env bash
# Builds and runs what deploy/container/{origin,edge}.Containerfile describe, step by step, where
# no container engine runs (docker's client without its daemon, and Docker Hub out of reach):
#   - the build stage's RUN lines on this machine: Debian bookworm with rustup's toolchain, as
#     the rust:1-bookworm image is;
#   - the runtime stage in a Debian bookworm minbase root made by debootstrap (what the
#     debian:bookworm-slim image is made from): its RUN lines in a chroot, its COPY --from=build
#     lines from the build, then its ENTRYPOINT and CMD run as its USER in its WORKDIR.
# Then the two run together: the origin, and the edge in front of it with a config of this
# script's; a page through the edge is a miss, then a hit, and the origin logged one request.
#
# Usage (as root; installs debootstrap, keeps the base root in target/container-rootfs):
#   deploy/container/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../../scripts/lib.sh
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || die "run as root: it makes a root file system and chroots into it"
apt_install debootstrap curl
BASE=target/container-rootfs
if [ ! -x "$BASE/usr/bin/apt-get" ]; then
  say "debootstrap: Debian bookworm minbase into $BASE"
  rm -rf "$BASE"
  debootstrap --variant=minbase bookworm "$BASE" http://deb.debian.org/debian >/dev/null
fi

ROOTS=()
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for root in "${ROOTS[@]}"; do
    for m in dev proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  done
}
trap cleanup EXIT

# The Containerfile's instructions of stage $2 (1: build, 2: runtime), continuations joined.
stage() {
  sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1" | awk -v want="$2" '/^FROM /{n++; next} n==want && NF && !/^#/'
}

# The words of a JSON array instruction: ["a", "b"] → a b (no spaces inside words here).
words() {
  sed -e 's/^[A-Z]* *\[//' -e 's/\]$//' -e 's/"//g' -e 's/,/ /g' <<<"$1"
}

# Builds image $1 into target/container-$1; sets USER_OF, WORKDIR_OF, COMMAND_OF.
build_image() {
  local name=$1 file=deploy/container/$1.Containerfile root=target/container-$1 line
  say "$file: build stage"
  while IFS= read -r line; do
    case $line in
      RUN\ *) say "  RUN ${line#RUN }"; bash -c "${line#RUN }" ;;
      WORKDIR\ */src | COPY\ .\ .) ;; # the build context is this checkout
      *) die "$file: build stage: $line is not understood by this script" ;;
    esac
  done < <(stage "$file" 1)

  say "$file: runtime stage in $root"
  rm -rf "$root"
  cp -a "$BASE" "$root"
  ROOTS+=("$root")
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount --bind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  USER_OF=0:0 WORKDIR_OF=/ COMMAND_OF=()
  local entrypoint=() cmd=()
  while IFS= read -r line; do
    case $line in
      RUN\ *) say "  RUN ${line#RUN }"; chroot "$root" /bin/sh -c "${line#RUN }" >/dev/null ;;
      COPY\ --from=build\ *)
        read -r _ _ src dst <<<"$line"
        say "  COPY ${src#/src/} → $dst"
        install -D -m 0755 "${src#/src/}" "$root$dst"
        ;;
      USER\ *) USER_OF=${line#USER } ;;
      WORKDIR\ *) WORKDIR_OF=${line#WORKDIR } ;;
      ENTRYPOINT\ *) read -r -a entrypoint <<<"$(words "$line")" ;;
      CMD\ *) read -r -a cmd <<<"$(words "$line")" ;;
      EXPOSE\ *) ;;
      *) die "$file: runtime stage: $line is not understood by this script" ;;
    esac
  done < <(stage "$file" 2)
  [ "$USER_OF" != 0:0 ] || die "$file: runs as root"
  COMMAND_OF=("${entrypoint[@]}" "${cmd[@]}")
  say "  image: $(du -sxh "$root" | cut -f1) (the base root: $(du -sxh "$BASE" | cut -f1)); runs ${COMMAND_OF[*]} as $USER_OF in $WORKDIR_OF"
}

# Runs image $1's command as its user in its working directory, with extra arguments.
run_image() {
  local root=target/container-$1
  shift
  chroot --userspec="$USER_OF" "$root" /bin/sh -c "cd '$WORKDIR_OF' && exec \"\$@\"" sh "${COMMAND_OF[@]}" "$@"
}

# As run_image, in the background: the process becomes the image's command ($! is its pid).
start_image() {
  local root=target/container-$1
  chroot --userspec="$USER_OF" "$root" /bin/sh -c "cd '$WORKDIR_OF' && exec \"\$@\"" sh "${COMMAND_OF[@]}" >"$2" 2>"$3" &
  PIDS+=($!)
}

ORIGIN_PORT=18381
EDGE_PORT=18380
ADMIN_PORT=18382

build_image origin
mkdir -p target/container-origin/etc/outpost
cat >target/container-origin/etc/outpost/origin.toml <<EOF
listen = "127.0.0.1:$ORIGIN_PORT"
[database]
url = "sqlite:///var/lib/outpost-origin/origin.db"
EOF
run_image origin --validate
start_image origin target/container-origin.access.log target/container-origin.log
ORIGIN_USER=$USER_OF

build_image edge
mkdir -p target/container-edge/etc/outpost
cat >target/container-edge/etc/outpost/edge.toml <<EOF
[server]
listen = ["127.0.0.1:$EDGE_PORT"]
[origin]
addresses = ["127.0.0.1:$ORIGIN_PORT"]
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
EOF
run_image edge --validate
start_image edge target/container-edge.access.log target/container-edge.log

for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break
  sleep 0.1
done
first=$(curl -fsS -o /dev/null -D - "http://127.0.0.1:$EDGE_PORT/" | tr -d '\r' | grep -i '^cache-status:')
second=$(curl -fsS -o /dev/null -D - "http://127.0.0.1:$EDGE_PORT/" | tr -d '\r' | grep -i '^cache-status:')
say "through the edge: $first / $second"
grep -q 'hit' <<<"$second" || die "the second request was not a hit: $second"
served=0
for _ in $(seq 50); do
  served=$(grep -c '"GET / HTTP/1.1" 200' target/container-origin.access.log || true)
  [ "$served" -ge 1 ] && break
  sleep 0.1
done
[ "$served" -eq 1 ] || die "the origin served / $served times, not once"
owner=$(stat -c %u:%g target/container-origin/var/lib/outpost-origin/origin.db)
[ "$owner" = "$ORIGIN_USER" ] || die "the origin's database belongs to $owner, not $ORIGIN_USER"
say "ok: both images build and run as non-root users; the edge serves the origin's page from cache"
