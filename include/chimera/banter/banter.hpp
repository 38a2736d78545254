// The scene's header was renamed after what it holds: Scene is in <chimera/banter/scene.hpp>,
// SceneConfig in <chimera/banter/scene_config.hpp>. Kept so that existing includes still build.
#pragma once

#include <chimera/banter/scene.hpp>
