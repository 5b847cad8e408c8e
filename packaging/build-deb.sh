#!/usr/bin/env bash
# Builds plainflow-relay_<version>_<arch>.deb in the repository root from
# this tree (`make deb`), then runs lintian on it (errors fail the build).
#
# The binary is a release build with the Swift runtime and libstdc++ linked
# statically, bind-now, PIE with packed relative relocations, stripped. The version is
# RelayVersion.current, read from the built binary (`plainflow-relay
# version`): there is no other place to change it. Everything else comes from packaging/debian/ and etc/relay.toml.
#
# Usage: packaging/build-deb.sh [--binary-only] [--package-version V] [--no-lintian] [--link-map FILE]
#   --binary-only        build and strip the binary only, print its path (make release)
#   --link-map FILE      also write the linker's map to FILE (packaging/hot-code/profile.sh)
#   --package-version V  label the package V instead of the binary's version (the
#                        packaging test's stand-in for an older release)
#   --no-lintian         skip lintian
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "build-deb: $*" >&2; exit 1; }

maintainer="plainflow-relay maintainers <relay@plainflow.net>"

binary_only=0 package_version="" run_lintian=1 link_map=
while (($#)); do
  case "$1" in
    --binary-only) binary_only=1 ;;
    --package-version) (($# >= 2)) || die "--package-version needs a value"; package_version=$2; shift ;;
    --no-lintian) run_lintian=0 ;;
    --link-map) (($# >= 2)) || die "--link-map needs a file"; link_map=$2; shift ;;
    *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
  esac
  shift
done

./scripts/need-packages.sh libcurl4-openssl-dev libsqlite3-dev libstdc++-12-dev pkg-config binutils dpkg-dev lintian
command -v swift >/dev/null || die "swift not found: install Swift 6 (https://www.swift.org/install/linux/)"

# One scratch path per flag set (swift-build does not notice a changed flag).
scratch=.build-static-fs
work=.build-deb
mkdir -p "$work"
# Linked by the toolchain's lld rather than gold, for two flags that keep
# the binary's startup pages out of memory (measured: idle RSS 33.3 -> 30.0
# MiB, see BENCHMARKS.md): pack-relative-relocs stores the 100,000 relative
# relocations of a PIE as a 19 KB bitmap instead of a 2.4 MB table the loader
# reads at every start, and --no-export-dynamic undoes the static runtime's
# -export-dynamic (1.3 MB of exported symbol names nothing looks up; the
# runtime finds types and conformances through its own sections).
#
# Every function in a section of its own, so that the linker can put the code
# a relay runs together (packaging/hot-code/: the kernel maps code 64 KiB
# around each page touched, so scattered hot code kept 11 MiB of the binary
# resident; measured in docs/PERFORMANCE.md). The frontend flag, not the
# driver's -function-sections, with which swift-build crashes ("unknown
# argument") on a rebuild. swift-build does not rebuild when an -Xswiftc
# flag changes: a new flag set needs a new scratch path.
flags=(-c release --scratch-path "$scratch" --static-swift-stdlib --disable-local-rpath
       -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections
       -Xswiftc -use-ld=lld -Xlinker -z -Xlinker now -Xlinker -z -Xlinker pack-relative-relocs
       -Xlinker --no-export-dynamic --product plainflow-relay)
# libstdc++ (the Swift runtime's and ICU's C++ library) linked in statically
# as well: only the code the relay calls, and none of the shared library's
# startup work (its locale tables), which kept 1.4 MiB of it resident
# (measured: idle RSS 25.0 -> 23.5 MiB, docs/PERFORMANCE.md round 17). The
# packages' own -lstdc++ comes before any linker flag a build can add, so a
# directory searched first holds a libstdc++.so that is a linker script
# naming the static archive.
cxx_archive=$("$(dirname "$(readlink -f "$(command -v swift)")")/clang" -print-file-name=libstdc++.a)
[ -f "$cxx_archive" ] || die "libstdc++.a not found (clang looked for it as $cxx_archive): install libstdc++-12-dev"
mkdir -p "$work/static-cxx"
echo "INPUT($cxx_archive)" >"$work/static-cxx/libstdc++.so"
flags+=(-Xswiftc "-L$root/$work/static-cxx")
bin_dir=$(swift build "${flags[@]}" --show-bin-path 2>"$work/show-bin-path.log") ||
  die "swift build --show-bin-path failed: $(tail -n 5 "$work/show-bin-path.log")"
built=$bin_dir/plainflow-relay
# The hot-code layout (PLAINFLOW_HOT_CODE=0 links without it, for comparisons).
# A stale layout links and runs the same; it only places less code well.
hot=packaging/hot-code
if [ "${PLAINFLOW_HOT_CODE:-1}" != 0 ] && [ -f "$hot/relay.order.gz" ] && [ -f "$hot/relay-hot.ld.gz" ]; then
  gunzip -c "$hot/relay.order.gz" >"$work/relay.order.new"
  gunzip -c "$hot/relay-hot.ld.gz" >"$work/relay-hot.ld.new"
else
  echo "   hot-code layout: none (PLAINFLOW_HOT_CODE=0, or $hot/*.gz missing)"
  : >"$work/relay.order.new"
  printf 'SECTIONS { .text.hot : { } } INSERT BEFORE .text;\n' >"$work/relay-hot.ld.new"
fi
# swift-build does not know these files: a changed layout must relink.
for f in relay.order relay-hot.ld; do
  cmp -s "$work/$f.new" "$work/$f" 2>/dev/null || { rm -f "$built"; mv "$work/$f.new" "$work/$f"; }
  rm -f "$work/$f.new"
done
layout_flags=(-Xlinker "--symbol-ordering-file=$root/$work/relay.order" -Xlinker --no-warn-symbol-ordering
              -Xlinker -T -Xlinker "$root/$work/relay-hot.ld")
if [ -n "$link_map" ]; then
  layout_flags+=(-Xlinker "-Map=$(cd "$caller" && realpath -m -- "$link_map")" -Xlinker --no-demangle)
  rm -f "$built"
fi
flags+=("${layout_flags[@]}")
echo "== release build (static Swift runtime) in $scratch"
swift build "${flags[@]}" >"$work/swift-build.log" 2>&1 || { tail -n 30 "$work/swift-build.log" >&2; die "swift build failed (full log: $work/swift-build.log)"; }
# Warnings stay visible.
grep -E 'warning:' "$work/swift-build.log" | sed -E 's/^.*(warning:)/   \1/' | sort -u || true
tail -n 1 "$work/swift-build.log"
[ -x "$built" ] || die "the build reported success but $built is missing"
if [ -s "$work/relay.order" ]; then
  # A layout that names code the build no longer has is stale: say how much of its symbols still apply.
  found=$(nm --defined-only "$built" | awk 'NR == FNR { want[$1]; next } ($3 in want) { delete want[$3]; n++ } END { print n + 0 }' "$work/relay.order" -)
  echo "   hot-code layout: $found of $(wc -l <"$work/relay.order") sections found by name (packaging/hot-code/profile.sh refreshes it)"
fi

stripped=$work/plainflow-relay
cp "$built" "$stripped"
strip --remove-section=.comment --remove-section=.note "$stripped"
if ((binary_only)); then
  echo "$root/$stripped"
  exit 0
fi

version_line=$("$stripped" version) || die "$stripped version failed"
version=${version_line#plainflow-relay }
[[ "$version" =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "unexpected version '$version' from '$stripped version' (expected 'plainflow-relay X.Y.Z')"
deb_version=${package_version:-$version}
arch=$(dpkg --print-architecture)
deb="plainflow-relay_${deb_version}_${arch}.deb"

# The shipped configuration is the commented template, which must point at
# the directories the unit creates.
grep -q '^path = "/var/lib/plainflow-relay/spool.db"$' etc/relay.toml ||
  die "etc/relay.toml: [spool] path must be /var/lib/plainflow-relay/spool.db (the unit's StateDirectory)"
grep -q '^unix = "/run/plainflow-relay/relay.sock"$' etc/relay.toml ||
  die "etc/relay.toml: [listen] unix must be /run/plainflow-relay/relay.sock (the unit's RuntimeDirectory)"
env -i PATH="$PATH" "$stripped" check-config --values-only --config etc/relay.toml >/dev/null || die "etc/relay.toml does not pass check-config"

echo "== staging $deb"
umask 022
stage=$work/stage
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/plainflow-relay" \
  "$stage/usr/share/man/man1" "$stage/usr/share/doc/plainflow-relay" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"
install -m 0755 "$stripped" "$stage/usr/bin/plainflow-relay"
install -m 0644 packaging/debian/plainflow-relay.service "$stage/lib/systemd/system/plainflow-relay.service"
install -m 0644 etc/relay.toml "$stage/etc/plainflow-relay/relay.toml"
install -m 0644 packaging/debian/copyright "$stage/usr/share/doc/plainflow-relay/copyright"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
printf '/etc/plainflow-relay/relay.toml\n' >"$stage/DEBIAN/conffiles"

# Shell completions, from swift-argument-parser (bash-completion sources its
# files, so the bash one loses its #! line).
"$stripped" --generate-completion-script bash | sed '1{/^#!/d}' >"$stage/usr/share/bash-completion/completions/plainflow-relay"
"$stripped" --generate-completion-script zsh >"$stage/usr/share/zsh/vendor-completions/_plainflow-relay"
"$stripped" --generate-completion-script fish >"$stage/usr/share/fish/vendor_completions.d/plainflow-relay.fish"
chmod 0644 "$stage"/usr/share/*/*completions*/*

# Dates from the last commit, so two builds of one commit are the same.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown")

# The man page, from the CLI's own help (argument-parser's generate-manual
# plugin; it builds the debug product in .build, which `make test` shares).
echo "== man page (swift package plugin generate-manual)"
swift package --scratch-path .build plugin generate-manual --date "$(date -u -d "@$epoch" +%F)" >"$work/manual.log" 2>&1 ||
  { tail -n 20 "$work/manual.log" >&2; die "generate-manual failed (full log: $work/manual.log)"; }
manual=$(find .build/plugins/GenerateManual/outputs -name plainflow-relay.1 -newer "$work/plainflow-relay" | head -n 1)
[ -n "$manual" ] || die "generate-manual wrote no plainflow-relay.1 under .build/plugins/GenerateManual/outputs (log: $work/manual.log)"
# generate-manual copies blank lines of a command's discussion into the page,
# where mdoc wants .Pp between paragraphs (groff warns, lintian too).
sed 's/^$/.Pp/' "$manual" | gzip -9n >"$stage/usr/share/man/man1/plainflow-relay.1.gz"

{
  printf 'plainflow-relay (%s) stable; urgency=medium\n\n' "$deb_version"
  printf '  * Built from git commit %s; the git log has the changes.\n\n' "$commit"
  printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$epoch")"
} | gzip -9n >"$stage/usr/share/doc/plainflow-relay/changelog.gz"  # a native package: changelog, not changelog.Debian

# Depends: what the binary links (dpkg-shlibdeps), plus adduser (postinst)
# and procps (/bin/kill for ExecReload).
echo "== dependencies"
ldd "$stage/usr/bin/plainflow-relay" | sed 's/^/   /'
shlib=$work/shlibdeps
rm -rf "$shlib" && mkdir -p "$shlib/debian"
printf 'Source: plainflow-relay\n\nPackage: plainflow-relay\nArchitecture: any\n' >"$shlib/debian/control"
shlibs=$(cd "$shlib" && dpkg-shlibdeps -O "$root/$stage/usr/bin/plainflow-relay" 2>"$root/$work/shlibdeps.log") ||
  die "dpkg-shlibdeps failed: $(cat "$work/shlibdeps.log")"
shlibs=${shlibs#shlibs:Depends=}
# Packed relative relocations need glibc 2.36 (the binary names the
# GLIBC_ABI_DT_RELR version, which dpkg-shlibdeps does not map to a package):
# without this floor, an older libc6 would install the package and then fail
# to start it.
versions=$(readelf -V "$stage/usr/bin/plainflow-relay") || die "readelf -V failed on the binary"
if [[ $versions == *GLIBC_ABI_DT_RELR* ]]; then
  libc_floor=$(grep -oE 'libc6 \(>= [^)]+\)' <<<"$shlibs" | sed -E 's/libc6 \(>= (.*)\)/\1/') ||
    die "dpkg-shlibdeps gave no versioned libc6 ($shlibs)"
  dpkg --compare-versions "$libc_floor" ge 2.36 || shlibs=${shlibs/"libc6 (>= $libc_floor)"/"libc6 (>= 2.36)"}
  floor_re='libc6 [(]>= 2[.](3[6-9]|[4-9][0-9])'
  [[ $shlibs =~ $floor_re ]] || die "the binary needs glibc 2.36 (packed relocations) but Depends says: $shlibs"
fi
for lib in libcurl4 libsqlite3-0; do
  grep -qE "(^|, )$lib( |,|$)" <<<"$shlibs" ||
    die "dpkg-shlibdeps found no $lib in the binary's libraries ($shlibs): did linking change?"
done
depends="$shlibs, adduser, procps"
echo "   Depends: $depends"

# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, plus one per directory.
installed_kib=$(find "$stage" -path "$stage/DEBIAN" -prune -o \( -type f -printf '%s\n' \) -o \( -type d -printf '1024\n' \) |
  awk '{ s += int(($1 + 1023) / 1024) } END { print s }')
sed -e "s|@VERSION@|$deb_version|" -e "s|@ARCH@|$arch|" -e "s|@INSTALLED_SIZE@|$installed_kib|" \
  -e "s|@DEPENDS@|$depends|" -e "s|@MAINTAINER@|$maintainer|" \
  packaging/debian/control.in >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch -h -d "@$epoch" {} +

dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "== built $deb: $(du -k "$deb" | cut -f1) KiB, installed $installed_kib KiB (binary $(du -k "$stage/usr/bin/plainflow-relay" | cut -f1) KiB)"

if ((run_lintian)); then
  echo "== lintian"
  # Errors and warnings fail the build: fix them, or override one in the
  # package (usr/share/lintian/overrides) with the reason beside it. The
  # info tags (`lintian --display-info`) are kept: no _FORTIFY_SOURCE in Swift
  # code, no init.d script (systemd only), and "spelling errors" that are
  # fragments of ICU and Foundation data inside the static binary.
  lintian --fail-on error,warning "$deb" ||
    die "lintian reported errors or warnings in $deb (above)"
  echo "   lintian: no errors, no warnings"
fi
