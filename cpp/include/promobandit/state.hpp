// The codes a policy's state is written in, defined once: the policy kind codes a
// kernel is built with and the slots of the int64 counter array every policy keeps.
// The binding exports both tables (promobandit._core.POLICY_KINDS and
// COUNTER_SLOTS) and python/promobandit/policies/_codes.py reads them from there,
// so Python never writes a code of its own. Counter slots are part of the saved
// state format (state_dict stores the counter array as is): append, never renumber.
#pragma once

#include <cstdint>

namespace promobandit {

// Multi-armed policies (multiarmed.hpp), one code per way of turning the
// sufficient statistics into a choice.
enum MabKind : int {
  kBetaTS = 0,
  kGaussianTS = 1,
  kUCB1 = 2,
  kUCBTuned = 3,
  kEpsilonGreedy = 4,
  kSoftmax = 5,
};

// Linear policies (linear.hpp); a separate family with its own kernel, so its
// codes start at 0 again.
enum LinKind : int { kLinUCB = 0, kLinTS = 1 };

// How Thompson sampling policies compute propensities: by counting wins over posterior
// draws, or exactly by quadrature (quadrature.hpp; Beta TS and LinTS).
enum PropensityMethod : int { kPropensityDraws = 0, kPropensityQuadrature = 1 };

inline constexpr bool is_mab_kind(int kind) { return kind >= kBetaTS && kind <= kSoftmax; }
inline constexpr bool is_lin_kind(int kind) { return kind == kLinUCB || kind == kLinTS; }

// Counter slots shared by every policy.
enum : int {
  kCtrDecisions = 0,     // decisions made so far = stream id of the next decision
  kCtrUpdates = 1,       // updates applied so far = the policy version
  kCtrPropensityAt = 2,  // kCtrUpdates when the propensity cache was filled, -1 if empty
  kCtrSeed = 3,          // the policy's seed (uint64 bits): state, so a load restores it
  kNumCounters = 4,
};

// The names Python sees, beside their codes (one row per enumerator above).
struct NamedCode {
  const char* name;
  int code;
};

inline constexpr NamedCode kMabKindNames[] = {
    {"BETA_TS", kBetaTS},   {"GAUSSIAN_TS", kGaussianTS},       {"UCB1", kUCB1},
    {"UCB_TUNED", kUCBTuned}, {"EPSILON_GREEDY", kEpsilonGreedy}, {"SOFTMAX", kSoftmax},
};

inline constexpr NamedCode kLinKindNames[] = {{"LIN_UCB", kLinUCB}, {"LIN_TS", kLinTS}};

inline constexpr NamedCode kPropensityMethodNames[] = {
    {"DRAWS", kPropensityDraws}, {"QUADRATURE", kPropensityQuadrature}};

inline constexpr NamedCode kCounterSlotNames[] = {
    {"DECISIONS", kCtrDecisions},
    {"UPDATES", kCtrUpdates},
    {"PROPENSITY_AT", kCtrPropensityAt},
    {"SEED", kCtrSeed},
};

static_assert(sizeof(kCounterSlotNames) / sizeof(kCounterSlotNames[0]) == kNumCounters,
              "every counter slot has a name");
static_assert(sizeof(kMabKindNames) / sizeof(kMabKindNames[0]) == kSoftmax + 1,
              "every multi-armed kind has a name");

}  // namespace promobandit
