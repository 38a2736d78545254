# llama.cpp as a dependency.
#
# 1. An installed llama.cpp wins: find_package(llama CONFIG), plus llama-server on PATH or in
#    LLAMA_SERVER_EXECUTABLE.
# 2. Otherwise the pinned source is taken from the npm package node-llama-cpp@3.21.1, which ships
#    llama.cpp 0.4.0 (commit 80fb11a) as a git bundle. The tarball's SHA-512 is checked against
#    the registry's integrity hash before anything is unpacked.
#
# The pinned build happens once, at configure time, into a cache outside the build tree
# (CHIMERA_CACHE_DIR, default ~/.cache/chimeraforge), keyed by commit and build flags, so a new
# build tree, a `rm -rf build` or another preset reuses it instead of paying ~10 minutes again.
#
# Two variants of the pinned build, each cached under its own key:
# - native (the default, for local work): static libraries compiled for this machine's CPU
#   (GGML_NATIVE), the fastest here, but a binary that may stop with SIGILL on an older CPU.
# - portable (-DCHIMERA_PORTABLE=ON, for shipping libchimera_c.so and the packages): shared
#   libraries compiled for a baseline x86-64, with ggml's CPU kernels built once per instruction
#   set as loadable modules (GGML_BACKEND_DL, GGML_CPU_ALL_VARIANTS); at run time ggml loads the
#   best one the CPU supports (include/chimera/core/install_paths.hpp says where they are found).
#   Its first build takes longer: the CPU backend is compiled for every variant.
# With CUDA (-DCHIMERA_LLAMA_CUDA=ON), CMAKE_CUDA_ARCHITECTURES picks the GPU generations
# (default 90, the H100/H200; e.g. "80;86;89;90" for a package).
#
# Results: target `chimera::llama` (llama + ggml), CHIMERA_LLAMA_SERVER (path to the
# llama-server binary that tests and `endpoints up` start), CHIMERA_LLAMA_PINNED (the project
# built it, so it installs llama-server), CHIMERA_GGML_BACKEND_DIR (where the portable build's
# CPU modules are; empty otherwise).

set(CHIMERA_LLAMA_NPM_PACKAGE "node-llama-cpp@3.21.1")
set(CHIMERA_LLAMA_NPM_SHA512
    "13737412fd956b4c33c9dbd7605c0cf47bf2a34ecfa168edf13ffd18c738dc2bedf18915fcd53fb5852010c0b582b4cfbf6a3d3d18d08b41b759be4ffdac2232")
set(CHIMERA_LLAMA_COMMIT "80fb11a")

set(CHIMERA_CACHE_DIR "$ENV{HOME}/.cache/chimeraforge" CACHE PATH
    "Where pinned third-party builds (llama.cpp) are cached across build trees")
option(CHIMERA_LLAMA_CUDA "Build the pinned llama.cpp with CUDA (CMAKE_CUDA_ARCHITECTURES, default 90)" OFF)
option(CHIMERA_USE_SYSTEM_LLAMA "Prefer an installed llama.cpp when CMake finds one" ON)
# llama.cpp's CPU matrix multiply takes llamafile's tiled kernels (tinyBLAS) for batches of 2 or
# more rows and ggml's dot products for a single row. Their rounding differs, so a sequence
# decoded beside others gives (slightly) different logits than decoded alone, and greedy outputs
# diverge after some tens of tokens. tinyBLAS itself computes each output from one accumulator,
# in the same order whatever the tile or the batch, so the pinned build sends a single row
# through it too (cmake/patches/, applied by _chimera_patch_pinned_llama, off unless the build
# defines CHIMERA_LLAMAFILE_EVERY_ROW): every row takes the same path, batching changes speed,
# never results, and batches keep the tiled kernels' speed (docs/inproc.md, "The ceiling").
# OFF builds llama.cpp as it ships, whose results depend on the batch.
option(CHIMERA_LLAMA_BATCH_INVARIANT "Build the pinned llama.cpp with llamafile's kernels for every row count (batch-invariant)" ON)
# ggml runs a graph's threads under OpenMP when it is available, and libgomp's threads spin
# between graphs. OFF uses ggml's own thread pool instead (its own cache entry); measured slower
# here than OpenMP at 1 and 16 agents, so OpenMP stays the default (docs/inproc.md, "OpenMP or
# ggml's own thread pool").
option(CHIMERA_LLAMA_OPENMP "Build the pinned llama.cpp with OpenMP threads (OFF: ggml's own thread pool)" ON)

function(_chimera_run)
  cmake_parse_arguments(R "" "WORKING_DIRECTORY;WHAT" "COMMAND" ${ARGN})
  message(STATUS "llama.cpp: ${R_WHAT}")
  execute_process(COMMAND ${R_COMMAND}
                  WORKING_DIRECTORY "${R_WORKING_DIRECTORY}"
                  RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(LENGTH "${out}" len)
    if(len GREATER 6000)
      math(EXPR start "${len} - 6000")
      string(SUBSTRING "${out}" ${start} 6000 out)
    endif()
    message(FATAL_ERROR "llama.cpp: ${R_WHAT} failed (exit ${rc}):\n${out}")
  endif()
endfunction()

# Fetches and verifies the pinned source into ${CHIMERA_CACHE_DIR}/llama.cpp-<commit>-src.
# Also used with an installed llama.cpp: `model synth` needs the source's tokenizer vocabularies.
function(chimera_fetch_pinned_llama out_src)
  set(root "${CHIMERA_CACHE_DIR}/llama.cpp-${CHIMERA_LLAMA_COMMIT}-src")
  set(src "${root}/src")
  set(${out_src} "${src}" PARENT_SCOPE)
  if(EXISTS "${root}/.chimera-complete")
    return()
  endif()
  file(MAKE_DIRECTORY "${root}")
  set(tgz "${root}/node-llama-cpp-3.21.1.tgz")
  if(EXISTS "${tgz}")
    file(SHA512 "${tgz}" have)
    if(NOT have STREQUAL CHIMERA_LLAMA_NPM_SHA512)
      file(REMOVE "${tgz}")
    endif()
  endif()
  if(NOT EXISTS "${tgz}")
    find_program(NPM_EXECUTABLE npm)
    if(NOT NPM_EXECUTABLE)
      message(FATAL_ERROR "llama.cpp: npm is needed to fetch the pinned llama.cpp source; run scripts/setup.sh")
    endif()
    _chimera_run(WHAT "fetching ${CHIMERA_LLAMA_NPM_PACKAGE} from the npm registry"
                 WORKING_DIRECTORY "${root}"
                 COMMAND "${NPM_EXECUTABLE}" pack "${CHIMERA_LLAMA_NPM_PACKAGE}" --silent)
  endif()
  file(SHA512 "${tgz}" have)
  if(NOT have STREQUAL CHIMERA_LLAMA_NPM_SHA512)
    file(REMOVE "${tgz}")
    message(FATAL_ERROR "llama.cpp: ${tgz} fails its integrity check\n"
                        "  expected sha512 ${CHIMERA_LLAMA_NPM_SHA512}\n  got      ${have}")
  endif()
  file(REMOVE_RECURSE "${root}/unpack" "${src}")
  file(MAKE_DIRECTORY "${root}/unpack")
  _chimera_run(WHAT "unpacking the git bundle" WORKING_DIRECTORY "${root}/unpack"
               COMMAND ${CMAKE_COMMAND} -E tar xzf "${tgz}" package/llama/gitRelease.bundle)
  find_package(Git REQUIRED)
  _chimera_run(WHAT "cloning llama.cpp ${CHIMERA_LLAMA_COMMIT} from the bundle"
               WORKING_DIRECTORY "${root}"
               COMMAND "${GIT_EXECUTABLE}" -c advice.detachedHead=false clone -q
                       "${root}/unpack/package/llama/gitRelease.bundle" "${src}")
  file(REMOVE_RECURSE "${root}/unpack")
  file(TOUCH "${root}/.chimera-complete")
endfunction()

# A shared build's llama-server needs libllama-server-impl.so, which llama.cpp does not install:
# beside the installed libraries, its run path ($ORIGIN/../lib) finds it without the build tree.
function(_chimera_copy_server_library root prefix)
  file(GLOB impl "${root}/build/bin/libllama-server-impl.so*")
  if(impl AND NOT EXISTS "${prefix}/lib/libllama-server-impl.so")
    file(COPY ${impl} DESTINATION "${prefix}/lib")
  endif()
endfunction()

# The pinned source's one change, cmake/patches/llama.cpp-<commit>-llamafile-every-row.patch:
# llamafile_sgemm() turns single rows away ("only enable sgemm for prompt processing"); with
# CHIMERA_LLAMAFILE_EVERY_ROW defined it takes them too, in jobs of 64 rows (a single row's jobs
# of 16 spent a quarter of a decode step claiming the shared job counter). Without the
# definition the file compiles as it ships, so the variants that do not define it share the
# patched source.
set(_chimera_llama_patch
    "${CMAKE_CURRENT_LIST_DIR}/patches/llama.cpp-${CHIMERA_LLAMA_COMMIT}-llamafile-every-row.patch")
function(_chimera_patch_pinned_llama src)
  find_package(Git REQUIRED)
  execute_process(COMMAND "${GIT_EXECUTABLE}" apply --reverse --check "${_chimera_llama_patch}"
                  WORKING_DIRECTORY "${src}" RESULT_VARIABLE already OUTPUT_QUIET ERROR_QUIET)
  if(already EQUAL 0)
    return()
  endif()
  _chimera_run(WHAT "applying ${_chimera_llama_patch}" WORKING_DIRECTORY "${src}"
               COMMAND "${GIT_EXECUTABLE}" apply "${_chimera_llama_patch}")
endfunction()

function(chimera_build_pinned_llama out_prefix src)
  if(CHIMERA_PORTABLE)
    set(flags "portable")
  else()
    set(flags "static")
  endif()
  if(CHIMERA_LLAMA_BATCH_INVARIANT)
    string(APPEND flags "-tiled-invariant")
  endif()
  if(NOT CHIMERA_LLAMA_OPENMP)
    string(APPEND flags "-noomp")
  endif()
  set(cuda_archs 90)
  if(CMAKE_CUDA_ARCHITECTURES)
    set(cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
  endif()
  if(CHIMERA_LLAMA_CUDA)
    string(REPLACE ";" "-" cuda_key "${cuda_archs}")
    string(APPEND flags "-cuda${cuda_key}")
  endif()
  set(root "${CHIMERA_CACHE_DIR}/llama.cpp-${CHIMERA_LLAMA_COMMIT}-${flags}")
  set(prefix "${root}/install")
  set(stamp "${prefix}/.chimera-complete")
  set(${out_prefix} "${prefix}" PARENT_SCOPE)
  if(EXISTS "${stamp}")
    message(STATUS "llama.cpp: using cached build in ${prefix}")
    _chimera_copy_server_library("${root}" "${prefix}")
    return()
  endif()
  file(MAKE_DIRECTORY "${root}")
  # A build tree left by an interrupted build of another source tree cannot be reconfigured.
  if(EXISTS "${root}/build/CMakeCache.txt")
    file(STRINGS "${root}/build/CMakeCache.txt" home REGEX "^CMAKE_HOME_DIRECTORY:INTERNAL=")
    if(NOT home STREQUAL "CMAKE_HOME_DIRECTORY:INTERNAL=${src}")
      file(REMOVE_RECURSE "${root}/build")
    endif()
  endif()

  set(args
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON
    -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_TOOLS_INSTALL=OFF
    -DLLAMA_BUILD_COMMON=ON
    "-DCMAKE_INSTALL_PREFIX=${prefix}")
  if(CHIMERA_PORTABLE)
    # GGML_BACKEND_DL needs shared libraries. llama-server finds them beside itself or in
    # ../lib (the cache's layout), and the CPU modules in its own folder.
    list(APPEND args -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON
                     -DGGML_CPU_ALL_VARIANTS=ON "-DCMAKE_INSTALL_RPATH=$ORIGIN:$ORIGIN/../lib")
  else()
    list(APPEND args -DBUILD_SHARED_LIBS=OFF)
  endif()
  list(APPEND args -DGGML_LLAMAFILE=ON)
  if(CHIMERA_LLAMA_BATCH_INVARIANT)
    _chimera_patch_pinned_llama("${src}")
    # Beside the user's flags, which a CMAKE_<LANG>_FLAGS given here would otherwise replace.
    list(APPEND args "-DCMAKE_C_FLAGS=$ENV{CFLAGS} -DCHIMERA_LLAMAFILE_EVERY_ROW"
                     "-DCMAKE_CXX_FLAGS=$ENV{CXXFLAGS} -DCHIMERA_LLAMAFILE_EVERY_ROW")
  endif()
  if(NOT CHIMERA_LLAMA_OPENMP)
    list(APPEND args -DGGML_OPENMP=OFF)
  endif()
  if(CHIMERA_LLAMA_CUDA)
    # nvcc is often outside PATH (/usr/local/cuda/bin); llama.cpp's enable_language(CUDA) would
    # not find it there.
    find_program(CHIMERA_NVCC nvcc HINTS ENV CUDA_PATH ENV CUDA_HOME PATH_SUFFIXES bin
                 PATHS /usr/local/cuda/bin)
    if(NOT CHIMERA_NVCC)
      message(FATAL_ERROR "llama.cpp: CHIMERA_LLAMA_CUDA needs CUDA's compiler, nvcc: put it on "
                          "PATH, set CUDA_PATH, or pass -DCHIMERA_NVCC=/path/to/nvcc")
    endif()
    # A list ("80;86;90") cannot cross execute_process as one argument: an initial cache can.
    file(WRITE "${root}/cuda-architectures.cmake"
         "set(CMAKE_CUDA_ARCHITECTURES \"${cuda_archs}\" CACHE STRING \"\")\n")
    list(APPEND args -DGGML_CUDA=ON -C "${root}/cuda-architectures.cmake"
                     "-DCMAKE_CUDA_COMPILER=${CHIMERA_NVCC}"
                     -DGGML_CUDA_FA_ALL_QUANTS=OFF -DGGML_NATIVE=OFF)
  endif()
  find_program(NINJA_EXECUTABLE ninja)
  if(NINJA_EXECUTABLE)
    list(APPEND args -G Ninja)
  endif()
  cmake_host_system_information(RESULT ncpu QUERY NUMBER_OF_LOGICAL_CORES)
  _chimera_run(WHAT "configuring (first build only; cached in ${root})"
               WORKING_DIRECTORY "${root}"
               COMMAND ${CMAKE_COMMAND} -S "${src}" -B "${root}/build" ${args})
  _chimera_run(WHAT "building llama, ggml and llama-server on ${ncpu} cores (about 10 minutes on 2 cores; once)"
               WORKING_DIRECTORY "${root}"
               COMMAND ${CMAKE_COMMAND} --build "${root}/build" --parallel ${ncpu}
                       --target llama llama-common llama-server)
  _chimera_run(WHAT "installing into ${prefix}" WORKING_DIRECTORY "${root}"
               COMMAND ${CMAKE_COMMAND} --install "${root}/build")
  # llama.cpp installs llama-common's library but not its headers; the in-process engine uses
  # its sampler and grammar helpers, so keep them beside the install.
  # Nor llama-common-base, which holds the build-info symbols llama-common needs.
  file(COPY "${root}/build/common/libllama-common-base.a" DESTINATION "${prefix}/lib")
  file(GLOB common_headers "${src}/common/*.h")
  file(COPY ${common_headers} DESTINATION "${prefix}/include/llama-common")
  file(COPY "${src}/common/jinja" DESTINATION "${prefix}/include/llama-common"
       FILES_MATCHING PATTERN "*.h")
  _chimera_copy_server_library("${root}" "${prefix}")
  file(TOUCH "${stamp}")
endfunction()

set(_chimera_llama_found FALSE)
if(CHIMERA_USE_SYSTEM_LLAMA)
  # An earlier configure leaves llama_DIR pointing at our own pinned build: that is not an
  # installed llama.cpp, and it is checked below.
  string(FIND "${llama_DIR}" "${CHIMERA_CACHE_DIR}" _in_cache)
  if(llama_DIR AND _in_cache EQUAL 0)
    set(llama_FOUND FALSE)
  else()
    find_package(llama CONFIG QUIET)
  endif()
  if(llama_FOUND)
    find_program(CHIMERA_LLAMA_SERVER llama-server)
    if(CHIMERA_LLAMA_SERVER)
      message(STATUS "llama.cpp: using the installed one (${llama_DIR}), server ${CHIMERA_LLAMA_SERVER}")
      set(_chimera_llama_found TRUE)
    else()
      message(STATUS "llama.cpp: an installed library was found but no llama-server; building the pinned one")
    endif()
  endif()
endif()

chimera_fetch_pinned_llama(CHIMERA_LLAMA_SOURCE_DIR)
set(CHIMERA_VOCAB_DIR "${CHIMERA_LLAMA_SOURCE_DIR}/models")

set(CHIMERA_LLAMA_PINNED FALSE)
set(CHIMERA_GGML_BACKEND_DIR "")
if(CHIMERA_PORTABLE AND _chimera_llama_found)
  message(STATUS "llama.cpp: CHIMERA_PORTABLE builds the pinned one, not the installed one")
  set(_chimera_llama_found FALSE)
endif()
if(NOT _chimera_llama_found)
  set(CHIMERA_LLAMA_PINNED TRUE)
  chimera_build_pinned_llama(_prefix "${CHIMERA_LLAMA_SOURCE_DIR}")
  if(CHIMERA_PORTABLE)
    set(CHIMERA_GGML_BACKEND_DIR "${_prefix}/bin")
  endif()
  # find_package trusts a cached <Pkg>_DIR over PATHS; the pinned build's flags may have changed.
  unset(llama_DIR CACHE)
  unset(ggml_DIR CACHE)
  unset(llama_LIBRARY CACHE)
  find_package(llama CONFIG REQUIRED PATHS "${_prefix}" NO_DEFAULT_PATH)
  set(CHIMERA_LLAMA_SERVER "${_prefix}/bin/llama-server" CACHE FILEPATH "llama-server binary" FORCE)
  set(CHIMERA_LLAMA_PREFIX "${_prefix}")
  set(CHIMERA_LLAMA_EVERY_ROW_TILED ${CHIMERA_LLAMA_BATCH_INVARIANT})
  # The chat code's headers (chat.h includes jinja/*.h), for a cache filled before they were
  # copied with the others.
  if(NOT EXISTS "${_prefix}/include/llama-common/jinja/parser.h"
     AND EXISTS "${_prefix}/include/llama-common")
    file(COPY "${CHIMERA_LLAMA_SOURCE_DIR}/common/jinja" DESTINATION "${_prefix}/include/llama-common"
         FILES_MATCHING PATTERN "*.h")
  endif()
endif()

if(NOT CHIMERA_LLAMA_PREFIX)
  get_filename_component(CHIMERA_LLAMA_PREFIX "${llama_DIR}/../../.." ABSOLUTE)
endif()
add_library(chimera_llama INTERFACE)
target_link_libraries(chimera_llama INTERFACE llama)
# llama.cpp's common library turns JSON schemas into grammars (structured output in-process).
# The pinned build installs it; an installed llama.cpp may not have it.
set(_common "${CHIMERA_LLAMA_PREFIX}/lib/libllama-common.a")
if(NOT EXISTS "${_common}")
  set(_common "${CHIMERA_LLAMA_PREFIX}/lib/libllama-common.so")  # a shared (portable) build
endif()
if(CHIMERA_LLAMA_PREFIX AND EXISTS "${_common}"
   AND EXISTS "${CHIMERA_LLAMA_PREFIX}/lib/libllama-common-base.a")
  target_link_libraries(chimera_llama INTERFACE "${_common}"
                        "${CHIMERA_LLAMA_PREFIX}/lib/libllama-common-base.a" llama)
  target_include_directories(chimera_llama INTERFACE "${CHIMERA_LLAMA_PREFIX}/include/llama-common")
  target_compile_definitions(chimera_llama INTERFACE CHIMERA_HAVE_LLAMA_COMMON)
endif()
if(CHIMERA_LLAMA_CUDA AND NOT CHIMERA_PORTABLE)
  # A static ggml-cuda: ggml's package file adds only the driver library (its runtime and cuBLAS
  # come along only with GGML_STATIC), so whoever links it names them.
  find_package(CUDAToolkit REQUIRED)
  target_link_libraries(chimera_llama INTERFACE CUDA::cudart CUDA::cublas CUDA::cublasLt
                                                CUDA::cuda_driver)
endif()
if(CHIMERA_LLAMA_EVERY_ROW_TILED)
  # llamafile's kernels take single rows too (the pinned build's change above), so the CPU
  # backend's LLAMAFILE feature no longer means results that depend on the batch.
  target_compile_definitions(chimera_llama INTERFACE CHIMERA_LLAMAFILE_EVERY_ROW)
endif()
if(CHIMERA_GGML_BACKEND_DIR)
  # The engine loads the CPU modules itself (src/backends/llama_engine.cpp).
  target_compile_definitions(chimera_llama INTERFACE CHIMERA_GGML_BACKEND_DL)
endif()
add_library(chimera::llama ALIAS chimera_llama)
