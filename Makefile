# The two commands of the README: `make run` and `make test`. Each installs what is
# missing (Debian 12 packages), builds, and then runs.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CTEST_ARGS ?=

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@scripts/dev-run.sh $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)

bench: build
	@scripts/install-deps.sh --bench
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
