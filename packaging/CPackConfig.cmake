# `cpack -G DEB` in a build tree (or `cmake --build <tree> --target package`):
# chimeraforge_<version>_<arch>.deb with the CLI, both libraries, headers, the CMake and
# pkg-config files, the data under /usr/share/chimeraforge and llama-server under
# /usr/lib/chimeraforge. Its dependencies come from dpkg-shlibdeps (dpkg-dev), so they name the
# Debian packages of exactly the libraries the binaries link. For packages that run on other
# machines, build the tree with -DCHIMERA_PORTABLE=ON (cmake/ChimeraLlama.cmake).
# The Python module is not in it: `pip install .` installs that.
set(CPACK_PACKAGE_NAME chimeraforge)
set(CPACK_PACKAGE_VENDOR "The Chimeraforge authors")
set(CPACK_PACKAGE_CONTACT "The Chimeraforge authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "A C++20 engine that runs LLM agents: llama.cpp in-process with continuous batching and\n sessions, streaming clients for Ollama and OpenAI-compatible servers, live banter for games\n through a C ABI (libchimera_c.so), and an agent workflow that analyses benchmark data.")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_CMAKE_PROJECTS
    "${PROJECT_BINARY_DIR};${PROJECT_NAME};runtime;/"
    "${PROJECT_BINARY_DIR};${PROJECT_NAME};dev;/")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# llama.cpp's shared libraries in a portable build live in the package's private folder.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "usr/${CHIMERA_INSTALL_PRIVATE_REL}")
# A shlibs file and the ldconfig trigger for libchimera.so.<major> and libchimera_c.so.<major>.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)

include(CPack)
