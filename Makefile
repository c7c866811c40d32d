# The two commands of the README: `make run` and `make test`. Each installs what is
# missing (Debian 12 packages), builds, and then runs.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CTEST_ARGS ?=

.PHONY: all deps build run test bench package clean

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

# The .deb packages (dingo, and dingo-dev once the library is there), and .rpm ones
# when rpmbuild is installed, in $(BUILD)/packages/.
package: build
	cd $(BUILD) && cpack
	@ls -1 $(BUILD)/packages/*.deb $(BUILD)/packages/*.rpm 2>/dev/null || true

bench: build
	@scripts/install-deps.sh --bench
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
