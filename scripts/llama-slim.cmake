# Included right after llama-cpp-python's top-level project() (CMAKE_PROJECT_llama_cpp_INCLUDE, set by
# `make model`). llama-cpp-python forces llama.cpp's `common` library on (a cache variable), though the
# Python package never loads it; a normal variable of the same name shadows that cache entry (policy
# CMP0126, NEW under its cmake_minimum_required 3.21), so `common` and its HTTP client are not compiled.
# The wheel keeps what `import llama_cpp` loads: libllama and the ggml libraries.
set(LLAMA_BUILD_COMMON OFF)
