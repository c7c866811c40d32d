// fuzz_config: parseConfig (core/Config.h), which reads dingo.toml with toml++ and
// validates every key. Bad input must end in ConfigError (what --check-config prints);
// any other exception, a crash or a hang is a finding. What it accepts it must accept
// again: the digest depends only on the text.
#include <exception>
#include <typeinfo>

#include "core/Config.h"
#include "tests/fuzz/FuzzCheck.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(dingo::fuzz::text(data, size));
  try {
    dingo::Config cfg = dingo::parseConfig(text, "/nonexistent/fuzz.toml");
    FUZZ_CHECK(dingo::parseConfig(text, "/nonexistent/fuzz.toml").digest == cfg.digest);
  } catch (const dingo::ConfigError&) {
    // Rejected, with a message naming the line and the key: what should happen.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parseConfig threw %s, not ConfigError: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
