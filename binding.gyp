{
  # node-gyp build of the same addon (cmake-js via `npm install` is the primary build). The x86 kernel families
  # live in their own targets so that only their files get -mavx2 / -mavx512* flags; the engine picks them at run
  # time (native/src/kernels/kernel_table.cpp). On other architectures those files are left out (plain kernels).
  "variables": {
    "x86_kernels": "<!(node -p \"['x64','ia32'].includes(process.arch) ? 1 : 0\")",
    "family_files": "node -p \"require('fs').readdirSync('native/src/kernels').filter(f=>f.endsWith(process.argv[1])).map(f=>'native/src/kernels/'+f).join(' ')\""
  },
  "targets": [
    {
      "target_name": "langneurons",
      "sources": ["<!@(node -p \"['core','kernels','model','runtime','train','binding'].flatMap(d=>require('fs').readdirSync('native/src/'+d).filter(f=>f.endsWith('.cpp')&&!/_avx(2|512|512bf16)\\.cpp$/.test(f)).map(f=>'native/src/'+d+'/'+f)).join(' ')\")"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "native/src"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "conditions": [["x86_kernels==1", {"dependencies": ["langneurons_avx2", "langneurons_avx512", "langneurons_avx512bf16"]}]]
    }
  ],
  "conditions": [
    ["x86_kernels==1", {
      "targets": [
        {
          "target_name": "langneurons_avx2",
          "type": "static_library",
          "sources": ["<!@(<(family_files) _avx2.cpp)"],
          "include_dirs": ["native/src"],
          "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx2", "-mfma", "-mf16c", "-fexceptions"],
          "cflags_cc!": ["-fno-exceptions"]
        },
        {
          "target_name": "langneurons_avx512",
          "type": "static_library",
          "sources": ["<!@(<(family_files) _avx512.cpp)"],
          "include_dirs": ["native/src"],
          "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw",
                        "-mavx512vl", "-mavx512dq", "-fexceptions"],
          "cflags_cc!": ["-fno-exceptions"]
        },
        {
          "target_name": "langneurons_avx512bf16",
          "type": "static_library",
          "sources": ["<!@(<(family_files) _avx512bf16.cpp)"],
          "include_dirs": ["native/src"],
          "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw",
                        "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-fexceptions"],
          "cflags_cc!": ["-fno-exceptions"]
        }
      ]
    }]
  ]
}
