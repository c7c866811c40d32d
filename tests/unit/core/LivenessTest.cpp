// core/Liveness: a callback's watch expires with its object, and only with it.
#include "core/Liveness.h"

#include <gtest/gtest.h>

#include <optional>

namespace dingo {
namespace {

TEST(Liveness, AWatchExpiresWhenItsObjectGoes) {
  std::optional<Liveness> life(std::in_place);
  Liveness::Watch w = life->watch();
  EXPECT_FALSE(w.expired());
  life.reset();
  EXPECT_TRUE(w.expired());
}

TEST(Liveness, ACopyIsAnotherObjectWithALifeOfItsOwn) {
  std::optional<Liveness> original(std::in_place);
  Liveness copy = *original;
  Liveness::Watch on_copy = copy.watch();
  Liveness::Watch on_original = original->watch();
  original.reset();
  EXPECT_TRUE(on_original.expired());
  EXPECT_FALSE(on_copy.expired());
  copy = Liveness();  // assigning keeps the object, and its token
  EXPECT_FALSE(on_copy.expired());
}

}  // namespace
}  // namespace dingo
