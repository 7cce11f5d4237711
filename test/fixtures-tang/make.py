"""Writes the Tang-format test files with real PyTorch (Debian: apt-get install python3-torch; /usr/bin/python3).

Shapes are the stories260k fixture's (5 layers, intermediate size 172). Run from the repository root:
    /usr/bin/python3 test/fixtures-tang/make.py
mask.pt      as Tang's identify.py saves activation_mask/<model>: a list over languages of a list over layers of
             int64 index tensors (torch.tensor(indices).long(); empty layers are empty tensors), plus one layer
             given as a strided view and one as int32, to exercise the reader's general path.
counts.pt    as Tang's activation.py saves activation.<lang>.train.<model>: dict(n=int, sum1..sum4 float32 [5, 172],
             over_zero int32 [5, 172]).
evil.pt      a pickle whose object reduces to os.system: the reader must refuse it without running anything.
expected.json  the values above as plain JSON (what torch.load gives), the reference of test/tang.test.ts.
"""
import json
import os
import torch

here = os.path.dirname(os.path.abspath(__file__))
L, I = 5, 172

en = [[3, 17, 100], [], [0, 171], [5], [9, 10, 11, 12]]
sw = [[4], [50, 60], [], [], [170]]
mask = []
for k, lang in enumerate([en, sw]):
    layers = [torch.tensor(h).long() for h in lang]
    mask.append(layers)
# language 0, layer 2: the same indices as a strided view of a larger tensor; language 1, layer 1: int32
mask[0][2] = torch.tensor([0, 99, 171, 98]).long()[::2]
mask[1][1] = torch.tensor([50, 60], dtype=torch.int32)
torch.save(mask, os.path.join(here, 'mask.pt'))

g = torch.Generator().manual_seed(7)
over_zero = torch.randint(0, 1000, (L, I), generator=g, dtype=torch.int32)
act = torch.rand(L, I, generator=g, dtype=torch.float32)
counts = dict(n=1000, sum1=act * 10, sum2=act * act * 3, sum3=act.pow(3), sum4=act.pow(4), over_zero=over_zero)
torch.save(counts, os.path.join(here, 'counts.pt'))


class Evil:
    def __reduce__(self):
        return (os.system, ('true',))


torch.save([Evil()], os.path.join(here, 'evil.pt'))

expected = {
    'mask': [[t.tolist() for t in lang] for lang in torch.load(os.path.join(here, 'mask.pt'))],
    'counts': {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in torch.load(os.path.join(here, 'counts.pt')).items()},
    'torch': torch.__version__,
}
with open(os.path.join(here, 'expected.json'), 'w') as f:
    json.dump(expected, f)
