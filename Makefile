# make run   install what is needed, build, and run the relay with a local upstream
# make test  the whole test suite (what CI runs)
# make bench  the benchmarks against PostgreSQL, SQLite, nginx, syslog-ng (not CI; ~15 min; writes BENCHMARKS.md)
# make fuzz   libFuzzer on the JSON parser and the message rules (SECONDS=60)
.PHONY: setup build run test release clean bench bench-quick fuzz

setup:
	./scripts/setup.sh

build: setup

run: setup
	./scripts/run-dev.sh

test:
	./scripts/test.sh

release:
	swift build -c release --scratch-path .build-static --static-swift-stdlib

clean:
	rm -rf .build .build-release run

bench:
	bench/harness.sh

bench-quick:
	bench/harness.sh --quick

fuzz:
	./scripts/fuzz.sh $(or $(SECONDS),60)
