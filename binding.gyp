{
  # node-gyp build of the same addon (cmake-js via `npm install` is the primary build). The AVX2 kernels live in
  # their own target so that only they get -mavx2 -mfma; the engine picks them at run time.
  "targets": [
    {
      "target_name": "langneurons_avx2",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('fs').readdirSync('native/src/kernels').filter(f=>f.endsWith('_avx2.cpp')).map(f=>'native/src/kernels/'+f).join(' ')\")"],
      "include_dirs": ["native/src"],
      "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx2", "-mfma", "-mf16c", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "langneurons",
      "dependencies": ["langneurons_avx2"],
      "sources": ["<!@(node -p \"['core','kernels','model','runtime','train','binding'].flatMap(d=>require('fs').readdirSync('native/src/'+d).filter(f=>f.endsWith('.cpp')&&!f.endsWith('_avx2.cpp')).map(f=>'native/src/'+d+'/'+f)).join(' ')\")"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "native/src"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"]
    }
  ]
}
