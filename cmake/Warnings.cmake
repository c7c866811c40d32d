# Project-wide warnings: the build is warning-free with -Wall -Wextra.
function(dingo_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local
                         -Wno-missing-field-initializers)
endfunction()
