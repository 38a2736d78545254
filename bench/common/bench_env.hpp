// cpu_model() and command_line() now live with the rest of a record's provenance.
#pragma once

#include "provenance.hpp"
