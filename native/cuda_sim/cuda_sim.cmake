# The CUDA simulator build (docs/CUDA-SIM.md): with -DLN_CUDA_SIM=ON (and LN_CUDA=OFF, a build folder of its own;
# scripts/cuda-sim-check.sh), `langneurons_cuda` is the CUDA runtime's own sources compiled by the host C++
# compiler against native/cuda_sim/include, and the GPU tests built on it run on the CPU. Included from the top
# CMakeLists.txt after langneurons_core; sets LN_WITH_CUDA so the tests link it as they link the real one.
find_program(LN_PERL perl REQUIRED)
set(LN_SIM_DIR ${CMAKE_CURRENT_SOURCE_DIR}/native/cuda_sim)
file(GLOB LN_SIM_CU_SOURCES CONFIGURE_DEPENDS native/src/cuda/*.cu)
file(GLOB LN_SIM_HOST_SOURCES CONFIGURE_DEPENDS native/src/cuda/*.cpp)
set(LN_SIM_GENERATED)
foreach(cu ${LN_SIM_CU_SOURCES})
  get_filename_component(name ${cu} NAME)
  set(out ${CMAKE_BINARY_DIR}/cuda_sim/${name}.cpp)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/cuda_sim
    COMMAND ${LN_PERL} ${LN_SIM_DIR}/rewrite_cu.pl ${cu} ${out}
    DEPENDS ${cu} ${LN_SIM_DIR}/rewrite_cu.pl VERBATIM)
  list(APPEND LN_SIM_GENERATED ${out})
endforeach()

add_library(langneurons_cuda STATIC ${LN_SIM_GENERATED} ${LN_SIM_HOST_SOURCES} ${LN_SIM_DIR}/sim_runtime.cpp
  ${LN_SIM_DIR}/sim_mma.cpp)
target_include_directories(langneurons_cuda BEFORE PUBLIC ${LN_SIM_DIR}/include)
target_include_directories(langneurons_cuda PUBLIC native/src PRIVATE native/src/cuda)
# -ffp-contract=off: the _rn intrinsics and the per-element math round one operation at a time, as on the GPU.
target_compile_options(langneurons_cuda PRIVATE ${LN_COMMON_FLAGS} -O2 -g -ffp-contract=off -Wno-unknown-pragmas)
target_compile_definitions(langneurons_cuda PUBLIC LN_CUDA_SIM)
target_link_libraries(langneurons_cuda PUBLIC langneurons_core ${CMAKE_DL_LIBS})
target_compile_definitions(langneurons_core PUBLIC LN_WITH_CUDA)

# cuBLASLt's stand-in, loaded by the runtime through LANGNEURONS_CUBLASLT (scripts/cuda-sim-check.sh sets it).
add_library(cublasLt_sim SHARED ${LN_SIM_DIR}/fake_cublaslt.cpp)
target_include_directories(cublasLt_sim PRIVATE native/src)
target_compile_options(cublasLt_sim PRIVATE ${LN_COMMON_FLAGS} -O2 -ffp-contract=off)
# Beside the test binaries also when cmake-js (which puts libraries in Release/) configures the build.
set_target_properties(cublasLt_sim PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
set(LN_WITH_CUDA ON)

# The simulator's own tests, and the cuBLASLt stand-in's (alone, and under the runtime's Gemm).
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/cuda_sim/test_cuda_sim.cu.cpp
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/cuda_sim
  COMMAND ${LN_PERL} ${LN_SIM_DIR}/rewrite_cu.pl ${LN_SIM_DIR}/test_cuda_sim.cu ${CMAKE_BINARY_DIR}/cuda_sim/test_cuda_sim.cu.cpp
  DEPENDS ${LN_SIM_DIR}/test_cuda_sim.cu ${LN_SIM_DIR}/rewrite_cu.pl VERBATIM)
add_executable(cuda_sim_tests ${CMAKE_BINARY_DIR}/cuda_sim/test_cuda_sim.cu.cpp)
target_compile_options(cuda_sim_tests PRIVATE ${LN_COMMON_FLAGS} -O1 -g -ffp-contract=off)
target_link_libraries(cuda_sim_tests PRIVATE langneurons_cuda)
add_executable(test_fake_cublaslt ${LN_SIM_DIR}/test_fake_cublaslt.cpp)
target_include_directories(test_fake_cublaslt PRIVATE native/src)
target_compile_options(test_fake_cublaslt PRIVATE ${LN_COMMON_FLAGS} -O2)
target_link_libraries(test_fake_cublaslt PRIVATE ${CMAKE_DL_LIBS})
add_executable(test_gemm_on_fake_cublaslt ${LN_SIM_DIR}/test_gemm_on_fake_cublaslt.cpp native/src/cuda/cublaslt_loader.cpp)
target_include_directories(test_gemm_on_fake_cublaslt PRIVATE native/src)
target_compile_options(test_gemm_on_fake_cublaslt PRIVATE ${LN_COMMON_FLAGS} -O2)
target_link_libraries(test_gemm_on_fake_cublaslt PRIVATE ${CMAKE_DL_LIBS})
