# build.cmake - initial cache (cmake -C) of the fuzz build: the whole tree
# configured again with clang, every library instrumented for libFuzzer
# (coverage) and ASan+UBSan, and only tests/fuzz/ registered under tests/.
# Used by the ExternalProject in tests/fuzz/CMakeLists.txt (the test build)
# and by tests/fuzz/run (campaigns). CMAKE_C_COMPILER comes from -D.
set(SG_FUZZ_BUILD ON CACHE BOOL "")
set(SG_TESTS ON CACHE BOOL "")
set(SG_SANITIZE OFF CACHE BOOL "")
set(SG_FUZZ OFF CACHE BOOL "")
set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "")
# -Wno-unknown-warning-option: the tree's gcc-only -Wno-format-truncation.
set(CMAKE_C_FLAGS "-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-unknown-warning-option" CACHE STRING "")
