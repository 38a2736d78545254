// The synthetic model's header was renamed (the synthetic server is synth/):
// <chimera/model/synthetic_model.hpp>. Kept so that existing includes still build.
#pragma once

#include <chimera/model/synthetic_model.hpp>
