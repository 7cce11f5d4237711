#include "gpu_test_util.h"
LN_TEST(gpu_smoke_device_present) { LN_CHECK(ln::cuda::device_count() > 0); }
