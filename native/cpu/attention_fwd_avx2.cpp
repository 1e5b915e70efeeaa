// AVX2 instantiation of the CPU attention forward kernel (templates in attention_impl.h; this
// file is built with the AVX2 flags and only called when ath::cpu::active_isa() allows it).
#include "attention_impl.h"

ATH_DEFINE_ATTENTION_FWD_ITEMS(avx2, VAvx2)
