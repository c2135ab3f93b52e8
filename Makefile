# The README's two commands: `make run` (the main job) and `make test` (the whole test suite).
# Both configure and build as needed.
BUILD ?= build
SAN_BUILD ?= build-san
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DATTN_WERROR=ON
endif

.PHONY: all build run test test-fast test-san bench clean format model

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Main job: a tour of the library on this machine (what it found, the example, a short benchmark).
run: build
	./$(BUILD)/attn demo

# Everything: the test suite on the release build, then again under ASan+UBSan.
test: test-fast test-san

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON -DATTN_BUILD_TOOLS=OFF $(CMAKE_FLAGS)

test-san: $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ATTN_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# The pretrained model of `attn embed` and tests/test_bert (pip, --no-deps: files only).
model:
	scripts/model.sh

bench: build
	./$(BUILD)/attn bench sdpa
	./$(BUILD)/attn bench gemm

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h src/cpu/*/*.c tests/*.c tests/*.h tools/attn/*.c

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
