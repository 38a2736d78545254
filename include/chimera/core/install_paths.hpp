// Where Chimeraforge finds the files it needs at run time: the tokenizer vocabularies that
// `model synth` copies, the llama-server that `endpoints up` and server-backed tests start, and
// (for a build of llama.cpp with loadable CPU backends) ggml's backend modules.
//
// An installed tree is relocatable. Its layout, under any prefix:
//
//   bin/chimeraforge                      the CLI
//   lib/libchimera.so, lib/libchimera_c.so
//   lib/chimeraforge/llama-server         and, in a portable build, llama.cpp's shared
//                                         libraries and CPU backend modules beside it
//   share/chimeraforge/vocab/             ggml-vocab-*.gguf
//   share/chimeraforge/sample/            the sample benchmark data
//
// The prefix is found from the file that holds this code (the CLI, libchimera.so,
// libchimera_c.so or the Python module): the nearest of its folder and that folder's first four
// ancestors that contains share/chimeraforge (bin/ and lib/ are one level below the prefix,
// lib/<multiarch>/ two, lib/python3.X/site-packages/chimeraforge/ four; a Python wheel carries
// share/ inside its package folder). Environment variables override each step:
//
//   CHIMERA_PREFIX         the installation prefix (instead of finding it)
//   CHIMERA_VOCAB_DIR      the folder holding ggml-vocab-*.gguf
//   CHIMERA_LLAMA_SERVER   the llama-server binary
//
// A program run inside its build tree finds none of that layout and falls back to the paths
// the build was made with (the pinned llama.cpp in ~/.cache/chimeraforge); llama-server last
// falls back to PATH.
//
// Thread safety: every function is thread-safe; results are computed on each call (cheap: a few
// stat calls) so that a changed environment is seen.
#pragma once

#include <filesystem>
#include <optional>

namespace chimera {

// The installation prefix this code runs from ($CHIMERA_PREFIX, else found as described above),
// or nothing when it runs from a build tree.
std::optional<std::filesystem::path> install_prefix();

// The file (shared object or executable) this code was loaded from.
std::filesystem::path this_module_path();

// The folder holding the tokenizer vocabularies (ggml-vocab-<name>.gguf).
std::filesystem::path vocab_dir();

// The llama-server binary to start; may not exist (the caller's error then names it).
std::filesystem::path llama_server_path();

// The folder holding ggml's loadable backend modules (libggml-cpu-*.so), for a llama.cpp built
// with GGML_BACKEND_DL; empty when this build has none.
std::filesystem::path ggml_backend_dir();

// The user's cache folder for Chimeraforge: $XDG_CACHE_HOME/chimeraforge, else
// $HOME/.cache/chimeraforge, else chimeraforge under the temporary folder. Not created here.
std::filesystem::path user_cache_dir();

}  // namespace chimera
