# The two commands of the README: `make run` and `make test`. Each installs what is
# missing (Debian 12 packages), builds, and then runs. `make test` builds two trees: the
# release one, and build-asan (clang-14, ASan+UBSan+LSan, and the libFuzzer targets),
# and runs the tests against both. `make fuzz` runs the fuzzers (docs/fuzzing.md).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CTEST_ARGS ?=
ASAN_BUILD ?= build-asan
ASAN_CXX ?= clang++-14
# -O1 and line tables: what ASan is meant to run with, and the quickest tree to compile.
# No NDEBUG: assertions are checks too.
ASAN_FLAGS ?= -O1 -gline-tables-only
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?=

.PHONY: all deps build asan-build run test fuzz fuzz-merge bench package clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@scripts/dev-run.sh $(BUILD)

$(ASAN_BUILD)/build.ninja: CMakeLists.txt
	CXX=$(ASAN_CXX) cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$(ASAN_FLAGS)" -DDINGO_FUZZ=ON

asan-build: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Both trees' suites run even when the first fails; the exit status says whether all passed.
test: build asan-build
	status=0; \
	(cd $(BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)) || status=1; \
	(cd $(ASAN_BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)) || status=1; \
	exit $$status

# Every fuzzer (or FUZZ_TARGET) for FUZZ_SECONDS each, from the checked-in corpus; new
# inputs go to $(ASAN_BUILD)/fuzz/corpus/, crashes to $(ASAN_BUILD)/fuzz/findings/.
fuzz: asan-build
	tests/fuzz/run.sh $(ASAN_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGET)

# Adds to the checked-in corpus only the inputs of the last `make fuzz` that reach new code.
fuzz-merge: asan-build
	tests/fuzz/run.sh --merge $(ASAN_BUILD) 0 $(FUZZ_TARGET)

# The .deb packages (dingo, and dingo-dev once the library is there), and .rpm ones
# when rpmbuild is installed, in $(BUILD)/packages/.
package: build
	cd $(BUILD) && cpack
	@ls -1 $(BUILD)/packages/*.deb $(BUILD)/packages/*.rpm 2>/dev/null || true

bench: build
	@scripts/install-deps.sh --bench
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
