# `cmake --install build --prefix P`: what a user takes home.
#
#   bin/chimeraforge
#   lib/libchimera.so.<major>, lib/libchimera_c.so.<major> (and their symlinks)
#   lib/chimeraforge/llama-server        when the project built llama.cpp (and, in a portable
#                                        build, llama.cpp's shared libraries and CPU modules)
#   include/chimera.h, include/chimera/...
#   lib/cmake/chimera/                   find_package(chimera): chimera::chimera, chimera::c
#   lib/pkgconfig/chimera.pc             pkg-config --cflags --libs chimera (the C ABI)
#   share/chimeraforge/vocab/            the tokenizer vocabularies `model synth` copies
#   share/chimeraforge/sample/           the sample benchmark data (`chimeraforge run --data`)
#   share/chimeraforge/examples/         scenes and the C host
#   share/doc/chimeraforge/copyright     the licence
#
# Components: `runtime` (what runs), `dev` (what builds against it), `python` (the module, for
# `cmake --install build --component python`; `pip install .` is the usual way).
include(CMakePackageConfigHelpers)

set(CHIMERA_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/chimera")

# --- run-time data ---------------------------------------------------------------------------
# Only the vocabularies the synthetic-model presets use (include/chimera/model/synthetic_model.hpp).
install(FILES "${CHIMERA_VOCAB_DIR}/ggml-vocab-llama-spm.gguf"
              "${CHIMERA_VOCAB_DIR}/ggml-vocab-llama-bpe.gguf"
        DESTINATION "${CHIMERA_INSTALL_DATA_REL}/vocab" COMPONENT runtime)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/data/sample/"
        DESTINATION "${CHIMERA_INSTALL_DATA_REL}/sample" COMPONENT runtime)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/examples/scenes"
        DESTINATION "${CHIMERA_INSTALL_DATA_REL}/examples" COMPONENT runtime)
install(FILES "${PROJECT_SOURCE_DIR}/examples/c/banter_host.c"
        DESTINATION "${CHIMERA_INSTALL_DATA_REL}/examples/c" COMPONENT dev)
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DOCDIR}"
        RENAME copyright COMPONENT runtime)

# --- llama.cpp's run-time parts, when the project built them ----------------------------------
if(CHIMERA_LLAMA_PINNED)
  install(PROGRAMS "${CHIMERA_LLAMA_SERVER}" DESTINATION "${CHIMERA_INSTALL_PRIVATE_REL}"
          COMPONENT runtime)
  if(CHIMERA_GGML_BACKEND_DIR)
    # Shared libraries (with their version symlinks) and the CPU backend modules, one per
    # instruction set; ggml loads the best the CPU runs from the folder llama-server is in.
    file(GLOB llama_shared_libs "${CHIMERA_LLAMA_PREFIX}/lib/lib*.so*")
    file(GLOB ggml_modules "${CHIMERA_GGML_BACKEND_DIR}/libggml-*.so")
    install(FILES ${llama_shared_libs} ${ggml_modules}
            DESTINATION "${CHIMERA_INSTALL_PRIVATE_REL}" COMPONENT runtime)
  endif()
endif()

# --- CMake package ---------------------------------------------------------------------------
install(EXPORT chimera-targets NAMESPACE chimera:: FILE chimera-targets.cmake
        DESTINATION "${CHIMERA_INSTALL_CMAKEDIR}" COMPONENT dev)
set(CHIMERA_INSTALL_DATADIR "${CHIMERA_INSTALL_DATA_REL}")
configure_package_config_file(cmake/chimera-config.cmake.in
  "${PROJECT_BINARY_DIR}/generated/chimera-config.cmake"
  INSTALL_DESTINATION "${CHIMERA_INSTALL_CMAKEDIR}"
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CHIMERA_INSTALL_DATADIR)
# 0.x: a minor version may break the API; 1.x on: the major version.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(chimera_compatibility SameMinorVersion)
else()
  set(chimera_compatibility SameMajorVersion)
endif()
write_basic_package_version_file("${PROJECT_BINARY_DIR}/generated/chimera-config-version.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY ${chimera_compatibility})
install(FILES "${PROJECT_BINARY_DIR}/generated/chimera-config.cmake"
              "${PROJECT_BINARY_DIR}/generated/chimera-config-version.cmake"
        DESTINATION "${CHIMERA_INSTALL_CMAKEDIR}" COMPONENT dev)

# --- pkg-config (the C ABI) ------------------------------------------------------------------
# The prefix is computed from the .pc file's own folder, so the installed tree stays relocatable.
file(RELATIVE_PATH CHIMERA_PC_PREFIX_REL "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" CHIMERA_PC_PREFIX_REL "${CHIMERA_PC_PREFIX_REL}")
configure_file(cmake/chimera.pc.in "${PROJECT_BINARY_DIR}/generated/chimera.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/generated/chimera.pc"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig" COMPONENT dev)
