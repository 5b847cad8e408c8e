#!/usr/bin/env bash
# The packaging test (make deb-test): builds the .deb (lintian: no errors)
# and a copy labelled with an older version, then on a minimal Debian 12
# root made with debootstrap (no Swift inside; cached in .build-deb-root/base,
# copied fresh for every run):
#   1. installs the older package with apt (its dependencies come from the
#      mirror); the relay, run as its user the way the unit runs it, spools
#      a call an app sends over the socket;
#   2. upgrades to this build: the spool and its call survive and stay
#      readable; version, check-config on the shipped config, the user and
#      group, file modes and owners, socket access by group, the unit file
#      (systemd-analyze verify, security below 2.0);
#   3. boots the root with systemd-nspawn and tests the real unit: started
#      at boot (Type=notify), socket, the write key credential, reload,
#      restart after a kill, an upgrade restarting it, stop; then
#      `dpkg --remove` with systemd running: stopped, spool and config kept;
#   4. `dpkg --purge` (and autoremove): spool, config, socket directory,
#      user and group gone, and no other file left behind.
# If systemd-nspawn cannot boot here, step 3 is skipped (and says so) and
# the removal runs in the chroot.
#
# Usage: packaging/test-deb.sh   (root; about 8 minutes from a fresh clone, 1.5 once built and cached)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t0=$(date +%s)

step() { printf '\n== %s (%ds)\n' "$*" $(($(date +%s) - t0)); }
ok() { echo "   ok: $*"; }
fail() { echo "deb-test: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap, chroot and systemd-nspawn need it"
./scripts/need-packages.sh debootstrap systemd-container

cache=$repo/.build-deb-root
base=$cache/base
root=$cache/test
arch=$(dpkg --print-architecture)
relay_user=plainflow-relay

# ---------------------------------------------------------------- cleanup
daemon_pid="" nspawn_pid="" leader=""
cleanup() {
  local rc=$?
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then kill -KILL "$daemon_pid" 2>/dev/null || true; fi
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true  # nspawn halts the container
    for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    # Still there: killing the container's init ends every process inside it.
    if [ -n "$leader" ]; then kill -KILL "$leader" 2>/dev/null || true; fi
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  if [ -d "$root" ]; then
    # Everything mounted under the test root, deepest first.
    awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || echo "deb-test: could not unmount $m" >&2
    done
  fi
  ((rc == 0)) || echo "deb-test: the test root is left in $root for a look (the next run replaces it)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_proc() { mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"; }
umount_proc() { if mountpoint -q "$root/proc"; then umount "$root/proc"; fi; }

# Runs a command in the chroot with a clean environment (at most 10 minutes: apt downloads).
in_root() {
  timeout 600 chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}
# Runs a command in the chroot as USER (with its groups).
as_user() {
  local user=$1; shift
  in_root setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}

# Fails unless PATH in the root has this mode, owner and group.
expect_stat() {
  local path=$1 want=$2 got
  [ -e "$root$path" ] || fail "$path is missing"
  got=$(in_root stat -c '%a %U:%G' "$path")  # names as the root's own passwd and group files give them
  [ "$got" = "$want" ] || fail "$path is '$got', expected '$want'"
  ok "$path $want"
}

spool_depth() {
  in_root plainflow-relay spool stats | sed -nE 's/^queued: +([0-9]+) messages?([ ,].*)?$/\1/p'
}

# --------------------------------------------------------- the two packages
step "building the package (packaging/build-deb.sh, lintian)"
packaging/build-deb.sh
version=$(.build-deb/plainflow-relay version | sed 's/^plainflow-relay //')
new_deb=plainflow-relay_${version}_${arch}.deb
old_version="${version}~old"
step "building the same binary labelled $old_version, the stand-in for the previous release"
packaging/build-deb.sh --package-version "$old_version" --no-lintian | tail -n 1
old_deb=plainflow-relay_${old_version}_${arch}.deb
for f in "$new_deb" "$old_deb"; do [ -f "$f" ] || fail "$f was not built"; done

# ------------------------------------------------------------- a clean root
mirror=$(sed -nE 's/^URIs: +(http[^ ]*debian)\/?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -f "$base/.complete" ]; then
  step "debootstrap --variant=minbase bookworm (systemd included) from $mirror, cached in $base"
  rm -rf "$base"
  mkdir -p "$cache"
  timeout 900 debootstrap --variant=minbase --include=systemd,systemd-sysv bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    fail "debootstrap failed; its log: $cache/debootstrap.log"
  touch "$base/.complete"
fi
step "a fresh copy of the root"
rm -rf "$root"
cp -a "$base" "$root"
rm -f "$root/.complete"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount_proc
in_root sh -c 'command -v swift' >/dev/null 2>&1 && fail "the test root has a Swift toolchain"

# What the root holds before the package, to find anything left behind after purge.
snapshot() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./sys -o -path ./run -o -path ./tmp \
    -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/lib/systemd \
    -o -path ./etc/machine-id -o -path ./etc/ld.so.cache -o -path ./var/tmp \) -prune -o -print | sort) |
    grep -vE '^\./etc/(passwd|group|shadow|gshadow|subuid|subgid)-$'  # the shadow tools' backups of those files
}
snapshot >"$cache/before.txt"
# The packages go to /root/debs (a booted container empties /tmp); deleted before the last snapshot.
mkdir -p "$root/root/debs"
cp "$new_deb" "$old_deb" "$root/root/debs/"

# ---------------------------------------------------------------- the relay
# Starts the relay as the unit would (its user, umask 0007, the runtime
# directory made for it) on the shipped config, with the upstream pointed at
# a closed local port (nothing leaves the machine) and TCP off (the chroot
# shares this machine's network; the socket is what apps use).
start_relay() {
  local log=$cache/relay-$1.log
  install -d -o "$(in_root id -u $relay_user)" -g "$(in_root id -g $relay_user)" -m 0750 "$root/run/plainflow-relay"
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    PLAINFLOW_RELAY_UPSTREAM_URL=http://127.0.0.1:9 PLAINFLOW_RELAY_TCP=off \
    /bin/sh -c "umask 0007; exec setpriv --reuid=$relay_user --regid=$relay_user --init-groups -- /usr/bin/plainflow-relay run" \
    >"$log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 200); do
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$log" >&2; fail "the relay exited at start (log above: $log)"; }
    [ -S "$root/run/plainflow-relay/relay.sock" ] && grep -q "listening" "$log" && { ok "the relay runs as $relay_user (pid $daemon_pid)"; return; }
    sleep 0.1
  done
  cat "$log" >&2
  fail "the relay did not listen on /run/plainflow-relay/relay.sock within 20 s (log: $log)"
}

# SIGTERM; the relay must exit 0 within its drain bound.
stop_relay() {
  kill -TERM "$daemon_pid"
  for _ in $(seq 600); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$daemon_pid" 2>/dev/null; then kill -KILL "$daemon_pid"; fail "the relay did not stop within 60 s of SIGTERM"; fi
  local rc=0
  wait "$daemon_pid" || rc=$?
  daemon_pid=""
  ((rc == 0)) || fail "the relay exited $rc after SIGTERM"
  ok "the relay stopped cleanly on SIGTERM"
}

# ------------------------------------------------- 1. the older package
step "1. apt-get install ./$old_deb"
in_root apt-get update -qq >"$cache/apt-update.log" 2>&1 || fail "apt-get update in the root failed (log: $cache/apt-update.log)"
in_root apt-get install -y -q --no-install-recommends "/root/debs/$old_deb" >"$cache/apt-old.log" 2>&1 ||
  { tail -n 20 "$cache/apt-old.log" >&2; fail "installing $old_deb failed (log: $cache/apt-old.log)"; }
[ "$(in_root dpkg-query -W -f='${Version}' plainflow-relay)" = "$old_version" ] || fail "dpkg does not list $old_version"
ok "installed $old_version with its dependencies from the mirror"
in_root useradd --create-home app
in_root useradd --create-home stranger
in_root adduser --quiet app "$relay_user"
ok "app user 'app' added to the group (adduser app plainflow-relay); 'stranger' is not in it"

start_relay old
as_user app plainflow-relay send --user-id before-upgrade --write-key app-key >/dev/null || fail "app could not send over the socket"
stop_relay
[ "$(spool_depth)" = 1 ] || fail "the spool holds $(spool_depth) messages after one call, expected 1"
ok "one call spooled (spool stats: 1 queued)"

# ------------------------------------------------------- 2. the upgrade
step "2. upgrade to $version (apt-get install ./$new_deb) over a non-empty spool"
in_root apt-get install -y -q --no-install-recommends "/root/debs/$new_deb" >"$cache/apt-new.log" 2>&1 ||
  { tail -n 20 "$cache/apt-new.log" >&2; fail "upgrading to $new_deb failed (log: $cache/apt-new.log)"; }
[ "$(in_root dpkg-query -W -f='${Version}' plainflow-relay)" = "$version" ] || fail "dpkg does not list $version after the upgrade"
grep -q "Unpacking plainflow-relay ($version) over ($old_version)" "$cache/apt-new.log" || fail "apt did not upgrade $old_version to $version (log: $cache/apt-new.log)"
ok "upgraded $old_version -> $version"
[ "$(spool_depth)" = 1 ] || fail "after the upgrade the spool holds $(spool_depth) messages, expected 1"
ok "the spool survived the upgrade and is readable (spool stats: 1 queued)"

[ "$(in_root plainflow-relay version)" = "plainflow-relay $version" ] || fail "'plainflow-relay version' says '$(in_root plainflow-relay version)'"
[ "$(in_root plainflow-relay --version)" = "plainflow-relay $version" ] || fail "'plainflow-relay --version' says '$(in_root plainflow-relay --version)'"
ok "plainflow-relay version: $version (and --version)"
check=$(in_root plainflow-relay check-config) || fail "check-config on the shipped config failed: $check"
grep -qE "^ok +spool: +/var/lib/plainflow-relay/spool.db " <<<"$check" || fail "the shipped config's spool is not /var/lib/plainflow-relay/spool.db: $check"
grep -qE "^ok +listen.unix: +socket /run/plainflow-relay/relay.sock " <<<"$check" || fail "the shipped config's socket is not /run/plainflow-relay/relay.sock: $check"
ok "check-config on /etc/plainflow-relay/relay.toml"
in_root dpkg-query -W -f='${Conffiles}\n' plainflow-relay | grep -q "/etc/plainflow-relay/relay.toml" || fail "relay.toml is not a conffile"
ok "relay.toml is a conffile"
in_root sh -c 'ldd /usr/bin/plainflow-relay | grep -q "not found"' && fail "the binary misses a library in the root: $(in_root ldd /usr/bin/plainflow-relay | grep 'not found')"
ok "every library the binary links is installed"

passwd_line=$(in_root getent passwd $relay_user) || fail "no user $relay_user"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd_line"
((uid < 1000)) || fail "$relay_user has uid $uid, not a system user"
[ "$home" = /var/lib/plainflow-relay ] && [ "$shell" = /usr/sbin/nologin ] || fail "$relay_user: home $home, shell $shell"
[ "$(in_root getent group $relay_user | cut -d: -f3)" = "$gid" ] || fail "$relay_user's primary group is not $relay_user"
ok "system user and group $relay_user (uid $uid, no login)"
expect_stat /usr/bin/plainflow-relay "755 root:root"
expect_stat /lib/systemd/system/plainflow-relay.service "644 root:root"
expect_stat /etc/plainflow-relay "755 root:root"
expect_stat /etc/plainflow-relay/relay.toml "644 root:root"
expect_stat /var/lib/plainflow-relay "700 $relay_user:$relay_user"
expect_stat /var/lib/plainflow-relay/spool.db "600 $relay_user:$relay_user"
for f in /usr/share/man/man1/plainflow-relay.1.gz /usr/share/doc/plainflow-relay/copyright /usr/share/doc/plainflow-relay/changelog.gz \
  /usr/share/bash-completion/completions/plainflow-relay /usr/share/zsh/vendor-completions/_plainflow-relay \
  /usr/share/fish/vendor_completions.d/plainflow-relay.fish; do
  expect_stat "$f" "644 root:root"
done

verify=$(in_root systemd-analyze verify /lib/systemd/system/plainflow-relay.service 2>&1) || true
# verify opens Documentation=man:plainflow-relay(1) with man, which a minimal root lacks (man-db);
# any other remark (or a failure) fails the test.
in_root sh -c 'command -v man' >/dev/null || verify=$(grep -v "Command 'man plainflow-relay(1)' failed" <<<"$verify" || true)
[ -z "$verify" ] || fail "systemd-analyze verify has remarks: $verify"
ok "systemd-analyze verify: clean"
exposure=$(in_root systemd-analyze security --offline=yes /lib/systemd/system/plainflow-relay.service 2>&1 | sed -nE 's/.*Overall exposure level for .*: ([0-9.]+) ([A-Z]+).*/\1 \2/p')
awk -v e="${exposure%% *}" 'BEGIN { exit !(e != "" && e < 2.0) }' || fail "systemd-analyze security: exposure '$exposure', expected below 2.0"
ok "systemd-analyze security: $exposure"

start_relay new
expect_stat /run/plainflow-relay "750 $relay_user:$relay_user"
expect_stat /run/plainflow-relay/relay.sock "660 $relay_user:$relay_user"
as_user app plainflow-relay send --user-id after-upgrade --write-key app-key >/dev/null || fail "app (in the group) could not send after the upgrade"
ok "app (in the group) sends over the socket"
if out=$(as_user stranger plainflow-relay send --user-id stranger --write-key app-key 2>&1); then fail "stranger (not in the group) could send: $out"; fi
ok "stranger (not in the group) cannot: ${out//$'\n'/ }"
status=$(in_root plainflow-relay status) || fail "plainflow-relay status failed: $status"
grep -qE "spool: +2 queued" <<<"$status" || fail "status does not show 2 queued: $status"
ok "plainflow-relay status: 2 queued (the call from before the upgrade and the new one)"
stop_relay

# ------------------------------------------------- 3. the unit, booted
# Runs a command inside the booted container (at most 2 minutes: a stop may take TimeoutStopSec).
in_boot() { timeout 120 nsenter --target "$leader" --all -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
unit_prop() { in_boot systemctl show -P "$1" plainflow-relay.service; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not within $seconds s"
}
unit_active() { [ "$(in_boot systemctl is-active plainflow-relay.service)" = active ]; }
main_pid_is_not() { local p; p=$(unit_prop MainPID); [ "$p" != 0 ] && [ "$p" != "$1" ] && unit_active; }

booted=0
step "3. systemd-nspawn --boot: the unit itself"
umount_proc
nspawn_log=$cache/nspawn.log
systemd-nspawn --quiet --directory="$root" --boot --private-network --register=no --keep-unit >"$nspawn_log" 2>&1 </dev/null &
nspawn_pid=$!
leader=""
for _ in $(seq 150); do
  kill -0 "$nspawn_pid" 2>/dev/null || break
  leader=$(pgrep -P "$nspawn_pid" -x systemd || true)
  if [ -n "$leader" ] && state=$(nsenter --target "$leader" --all -- /bin/systemctl is-system-running 2>/dev/null); then
    booted=1; break
  fi
  [ "${state:-}" = degraded ] && { booted=1; break; }
  sleep 0.2
done
if ((booted == 0)); then
  echo "   SKIPPED: systemd-nspawn --boot did not come up here (log: $nspawn_log); the unit was checked with systemd-analyze only" >&2
  if kill -0 "$nspawn_pid" 2>/dev/null; then kill -TERM "$nspawn_pid"; wait "$nspawn_pid" || true; fi
  nspawn_pid=""
  mount_proc
  step "dpkg --remove (in the chroot)"
  in_root dpkg --remove plainflow-relay >"$cache/dpkg-remove.log" 2>&1 || fail "dpkg --remove failed (log: $cache/dpkg-remove.log)"
else
  ok "booted (system state: ${state:-running}; container leader pid $leader)"
  wait_for 30 "plainflow-relay.service active after boot" unit_active
  [ "$(in_boot systemctl is-enabled plainflow-relay.service)" = enabled ] || fail "the unit is not enabled"
  ok "enabled by the package and started at boot"
  status_text=$(unit_prop StatusText)
  [[ "$status_text" == "listening on "* ]] || fail "no READY/STATUS notification: StatusText='$status_text'"
  ok "Type=notify: systemd got READY=1 with STATUS='$status_text'"
  echo "   info: idle RSS of the service: $(in_boot sh -c 'sed -nE "s/^VmRSS:[[:space:]]+//p" /proc/$(systemctl show -P MainPID plainflow-relay.service)/status')"
  in_boot stat -c '%a %U:%G' /run/plainflow-relay/relay.sock | grep -qx "660 $relay_user:$relay_user" || fail "socket under systemd: $(in_boot stat -c '%a %U:%G' /run/plainflow-relay/relay.sock)"
  ok "socket 0660 $relay_user:$relay_user"
  in_boot setpriv --reuid=app --regid=app --init-groups -- plainflow-relay send --user-id booted --write-key app-key >/dev/null ||
    fail "app could not send to the service"
  if out=$(in_boot setpriv --reuid=app --regid=app --init-groups -- plainflow-relay send --user-id no-key 2>&1); then
    fail "a call without a key was accepted although no write key is set: $out"
  fi
  ok "no write_key file: the service runs and wants the apps' keys (${out//$'\n'/ })"

  # The write key: the file the README describes, then a restart.
  in_boot sh -c 'install -m 0640 -o root -g plainflow-relay /dev/null /etc/plainflow-relay/write_key && printf "%s\n" deb-test-key >/etc/plainflow-relay/write_key'
  in_boot systemctl restart plainflow-relay.service
  in_boot setpriv --reuid=app --regid=app --init-groups -- plainflow-relay send --user-id with-relay-key >/dev/null ||
    fail "after setting /etc/plainflow-relay/write_key and a restart, a call without an app key was refused"
  ok "write key from /etc/plainflow-relay/write_key (LoadCredential): apps need none"
  in_boot journalctl -u plainflow-relay.service -o cat | grep -q deb-test-key && fail "the write key appears in the journal"
  ok "the key does not appear in the journal"

  # Reload: SIGHUP, same process, the configuration read again.
  pid=$(unit_prop MainPID)
  in_boot sed -i 's/^level = "info"$/level = "debug"/' /etc/plainflow-relay/relay.toml
  in_boot systemctl reload plainflow-relay.service
  wait_for 10 "the reload in the journal" sh -c "nsenter --target $leader --all -- journalctl -u plainflow-relay.service -o cat | grep -q 'log_level=debug'"
  [ "$(unit_prop MainPID)" = "$pid" ] && unit_active || fail "reload changed the main process or stopped the unit"
  ok "systemctl reload: same process ($pid), configuration and log level (debug) applied"
  in_boot sed -i 's/^level = "debug"$/level = "info"/' /etc/plainflow-relay/relay.toml

  # Restart=on-failure after a crash.
  in_boot kill -KILL "$pid"
  wait_for 30 "a restart after kill -9" main_pid_is_not "$pid"
  [ "$(unit_prop NRestarts)" -ge 1 ] || fail "NRestarts is $(unit_prop NRestarts) after a kill"
  ok "kill -9: restarted (pid $(unit_prop MainPID), NRestarts $(unit_prop NRestarts))"

  # An upgrade with systemd running restarts the service and keeps the spool.
  pid=$(unit_prop MainPID)
  in_boot dpkg -i "/root/debs/$new_deb" >"$cache/dpkg-reinstall.log" 2>&1 || fail "dpkg -i over the running service failed (log: $cache/dpkg-reinstall.log)"
  wait_for 30 "the service restarted by the upgrade" main_pid_is_not "$pid"
  ok "dpkg -i over the running service restarted it (pid $pid -> $(unit_prop MainPID))"
  in_boot plainflow-relay status | grep -qE "spool: +4 queued" || fail "after the restarts the spool does not hold 4 calls: $(in_boot plainflow-relay status)"
  ok "the spool holds all 4 calls across the upgrades and restarts"

  # Stop: a clean exit, well within TimeoutStopSec; the socket directory stays.
  start=$(date +%s%N)
  in_boot systemctl stop plainflow-relay.service
  stop_ms=$((($(date +%s%N) - start) / 1000000))
  [ "$(in_boot systemctl is-active plainflow-relay.service)" = inactive ] || fail "after stop the unit is $(in_boot systemctl is-active plainflow-relay.service)"
  [ "$(unit_prop ExecMainStatus)" = 0 ] || fail "the relay exited $(unit_prop ExecMainStatus) on stop"
  in_boot test -d /run/plainflow-relay || fail "/run/plainflow-relay is gone after stop (RuntimeDirectoryPreserve=yes)"
  ok "systemctl stop: exit 0 in $stop_ms ms, /run/plainflow-relay kept"
  exposure=$(in_boot systemd-analyze security plainflow-relay.service 2>&1 | sed -nE 's/.*Overall exposure level for .*: ([0-9.]+) ([A-Z]+).*/\1 \2/p')
  ok "systemd-analyze security (loaded unit): $exposure"

  step "dpkg --remove with systemd running"
  in_boot systemctl start plainflow-relay.service
  in_boot dpkg --remove plainflow-relay >"$cache/dpkg-remove.log" 2>&1 || fail "dpkg --remove failed (log: $cache/dpkg-remove.log)"
  [ "$(in_boot systemctl is-active plainflow-relay.service)" != active ] || fail "the service still runs after dpkg --remove"
  ok "the service was stopped"
  in_boot systemctl poweroff >/dev/null 2>&1 || true
  for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$nspawn_pid" 2>/dev/null && fail "the container did not power off within 30 s"
  wait "$nspawn_pid" || true
  nspawn_pid=""
  mount_proc
fi

# ------------------------------------------------- remove, then purge
[ ! -e "$root/usr/bin/plainflow-relay" ] || fail "/usr/bin/plainflow-relay is still there after dpkg --remove"
[ -f "$root/var/lib/plainflow-relay/spool.db" ] || fail "dpkg --remove deleted the spool"
[ -f "$root/etc/plainflow-relay/relay.toml" ] || fail "dpkg --remove deleted the configuration"
in_root getent passwd $relay_user >/dev/null || fail "dpkg --remove deleted the user"
ok "removed: binary gone; spool, configuration and user kept"

step "4. dpkg --purge"
in_root dpkg --purge plainflow-relay >"$cache/dpkg-purge.log" 2>&1 || fail "dpkg --purge failed (log: $cache/dpkg-purge.log)"
for p in /var/lib/plainflow-relay /etc/plainflow-relay /run/plainflow-relay /etc/systemd/system/plainflow-relay.service \
  /etc/systemd/system/multi-user.target.wants/plainflow-relay.service; do
  [ ! -e "$root$p" ] && [ ! -L "$root$p" ] || fail "$p is still there after purge"
done
in_root getent passwd $relay_user >/dev/null && fail "user $relay_user is still there after purge"
in_root getent group $relay_user >/dev/null && fail "group $relay_user is still there after purge"
grep -q "plainflow-relay" "$root/etc/group" && fail "/etc/group still names plainflow-relay"
ok "spool, configuration, write key, socket directory, user and group are gone"
in_root userdel --remove app 2>/dev/null
in_root userdel --remove stranger 2>/dev/null
in_root apt-get autoremove --purge -y -q >"$cache/apt-autoremove.log" 2>&1 || fail "apt-get autoremove failed (log: $cache/apt-autoremove.log)"
rm -rf "$root/root/debs"
orphans=$(in_root find / -xdev \( -nouser -o -nogroup \) -print 2>/dev/null | grep -v '^/proc' || true)
[ -z "$orphans" ] || fail "files of a deleted user or group remain: $orphans"
leftover=$(in_root find / -xdev -path /proc -prune -o -path /var/log -prune -o -path /var/lib/dpkg -prune -o -iname '*plainflow*' -print || true)
[ -z "$leftover" ] || fail "files named plainflow remain: $leftover"
snapshot >"$cache/after.txt"
if ! diff -u "$cache/before.txt" "$cache/after.txt" >"$cache/leftovers.diff"; then
  cat "$cache/leftovers.diff" >&2
  fail "the root differs from before the installation (above; dependencies autoremoved)"
fi
ok "nothing left behind (same files as before the installation, outside logs, apt and dpkg state)"

step "passed: .deb $(du -k "$new_deb" | cut -f1) KiB, installed $(dpkg-deb -f "$new_deb" Installed-Size) KiB, total $(($(date +%s) - t0)) s"
