// Vectorised reductions (see lanes.inc) in namespace gis::cpu, for the default instruction set.
#pragma once

#include <cstdint>
#include <cstring>

namespace gis {
namespace cpu {
#include "lanes.inc"
}  // namespace cpu
}  // namespace gis
