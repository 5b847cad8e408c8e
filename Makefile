# make run   install what is needed, build, and run the relay with a local upstream
# make build  install what is needed, build, and make bin/plainflow-relay (the debug build with etc/relay.dev.toml)
# make test  the whole test suite (what CI runs)
# make test-clients  only the client examples and SDKs against the relay (docs/CLIENTS.md)
# make bench  the benchmarks against PostgreSQL, SQLite, nginx, syslog-ng (not CI; ~15 min; writes BENCHMARKS.md)
# make fuzz   libFuzzer on the JSON parser and the message rules (SECONDS=60)
# make deb    plainflow-relay_<version>_<arch>.deb (static release build, lintian)
# make deb-test  the packaging test: install, upgrade, the unit, remove, purge on a clean Debian 12 root (root)
.PHONY: setup build run test test-clients release deb deb-test clean bench bench-quick fuzz

setup:
	./scripts/setup.sh

build: setup

run: setup
	./scripts/run-dev.sh

test:
	./scripts/test.sh

test-clients:
	./scripts/test-clients.sh

# The packaged binary: static Swift runtime, bind-now, stripped (.build-deb/plainflow-relay).
release:
	packaging/build-deb.sh --binary-only

deb:
	packaging/build-deb.sh

deb-test:
	packaging/test-deb.sh

clean:
	rm -rf .build .build-release .build-static .build-static-fs .build-deb run plainflow-relay_*.deb

bench:
	bench/harness.sh

bench-quick:
	bench/harness.sh --quick

fuzz:
	./scripts/fuzz.sh $(or $(SECONDS),60)
