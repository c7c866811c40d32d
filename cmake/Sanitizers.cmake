# The sanitizer build: AddressSanitizer (with LeakSanitizer) and UBSan on every target,
# undefined behaviour fatal, and with DINGO_FUZZ the coverage hooks libFuzzer needs.
# `make test` configures one such tree (build-asan, clang-14, both options on): the unit
# and integration tests run against its binaries and the fuzzers link its libraries.
if(DINGO_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "DINGO_FUZZ needs clang (libFuzzer): configure with CXX=clang++-14")
  endif()
  set(DINGO_SANITIZE ON)
endif()

if(DINGO_SANITIZE)
  set(dingo_sanitizers -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang 14's -fsanitize=function (part of "undefined") emits prologue data that the
    # assembler cannot place next to coroutine frames ("Cannot represent a difference
    # across sections" in every Asio coroutine); it only checks calls through mistyped
    # function pointers, which this code does not make.
    list(APPEND dingo_sanitizers -fno-sanitize=function)
  endif()
  add_compile_options(${dingo_sanitizers} -fno-omit-frame-pointer)
  add_link_options(${dingo_sanitizers})
  if(DINGO_FUZZ)
    # Coverage feedback from every library a fuzzer links; the fuzzers themselves add
    # -fsanitize=fuzzer (libFuzzer's main), the other programs run as usual.
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
endif()
