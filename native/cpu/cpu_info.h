// CPU feature detection and the ISA the CPU kernels dispatch to (AVX-512 > AVX2 > scalar).
#pragma once

namespace ath::cpu {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// The ISA kernels should use now: the best the CPU supports unless overridden by ath_cpu_set_isa.
Isa active_isa();
// The best ISA this CPU supports.
Isa best_isa();
const char* isa_name(Isa isa);

}  // namespace ath::cpu
