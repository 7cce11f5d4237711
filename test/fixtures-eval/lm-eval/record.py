"""Records the zero-shot requests lm-evaluation-harness builds for the fixture items, from lm-eval's own task
files: usage `python3 record.py <lm-evaluation-harness checkout> [<its commit>] > requests.json` (run from this folder).

It needs only jinja2 and PyYAML, not lm-eval's dependencies, so it re-creates the few steps of
lm_eval/api/task.py (ConfigurableTask.fewshot_context / construct_requests, zero-shot, no chat template) that
turn a task's YAML into requests: context = description + doc_to_text rendered by lm_eval.utils.apply_template's
jinja2 Environment (StrictUndefined, keep_trailing_newline), continuation = target_delimiter (" ") + choice;
multiple-input tasks (xwinograd) take one context per choice; a doc_to_choice template renders a Python list
literal, as lm-eval's ast.literal_eval reads it; `!function utils.x` runs the task's own utils.py.
"""
import ast, csv, importlib.util, json, os, subprocess, sys
import jinja2, yaml

LM = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
FX = os.path.dirname(HERE)
env = jinja2.Environment(loader=jinja2.BaseLoader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

class Loader(yaml.SafeLoader):
    pass
Loader.add_constructor('!function', lambda l, n: ('!function', l.construct_scalar(n)))

def task_yaml(rel):
    """A task YAML with its `include:` chain merged (the including file wins)."""
    path = os.path.join(LM, 'lm_eval/tasks', rel)
    with open(path, encoding='utf-8') as f:
        cfg = yaml.load(f, Loader=Loader)
    if 'include' in cfg:
        base = task_yaml(os.path.join(os.path.dirname(rel), cfg['include']))
        base.update({k: v for k, v in cfg.items() if k != 'include'})
        cfg = base
    cfg['_dir'] = os.path.dirname(path)
    return cfg

def func(cfg, ref):
    mod, name = ref.rsplit('.', 1)
    spec = importlib.util.spec_from_file_location(mod, os.path.join(cfg['_dir'], mod + '.py'))
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return getattr(m, name)

def field(cfg, key, doc):
    v = cfg.get(key)
    if isinstance(v, tuple): return func(cfg, v[1])(doc)
    if isinstance(v, str):
        if key != 'doc_to_text' and v in doc: return doc[v]
        out = env.from_string(v).render(**doc)
        return ast.literal_eval(out) if key == 'doc_to_choice' else out
    return v

def requests(cfg, doc):
    desc = env.from_string(cfg.get('description') or '').render(**doc)
    text, choices = field(cfg, 'doc_to_text', doc), field(cfg, 'doc_to_choice', doc)
    delim = cfg.get('target_delimiter', ' ')
    if cfg['output_type'] == 'generate_until':
        return {'context': desc + text, 'until': cfg['generation_kwargs']['until']}
    if isinstance(text, int):  # multiple input: doc_to_choice gives the contexts
        target = field(cfg, 'doc_to_target', doc)
        return {'pairs': [[desc + c, delim + target] for c in choices], 'choices': choices, 'gold': text}
    target = field(cfg, 'doc_to_target', doc)
    gold = target if isinstance(target, int) else int(target) if str(target).isdigit() else choices.index(target)
    return {'pairs': [[desc + text, delim + c] for c in choices], 'choices': choices, 'gold': gold}

def jsonl(rel):
    with open(os.path.join(FX, rel), encoding='utf-8') as f:
        return [json.loads(l) for l in f if l.strip()]

def squad(rel):
    with open(os.path.join(FX, rel), encoding='utf-8') as f:
        d = json.load(f)
    return [{'id': q['id'], 'context': p['context'], 'question': q['question'],
             'answers': {'text': [a['text'] for a in q['answers']], 'answer_start': [a['answer_start'] for a in q['answers']]}}
            for a in d['data'] for p in a['paragraphs'] for q in p['qas']]

def mmmlu(rel):  # openai/MMMLU rows as cais/mmlu's fields (question, choices, answer index, subject)
    with open(os.path.join(FX, rel), encoding='utf-8', newline='') as f:
        return [{'question': r['Question'], 'choices': [r['A'], r['B'], r['C'], r['D']], 'answer': 'ABCD'.index(r['Answer']), 'subject': r['Subject']}
                for r in csv.DictReader(f)]

def mmlu_cfg(subject):
    cfg = task_yaml('mmlu/default/_default_template_yaml')
    # mmlu/default/_generate_configs.py writes this description into every mmlu_<subject>.yaml
    cfg['description'] = f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"
    return cfg

def include_cfg(language, domain):
    d = os.path.join('include/default', language)
    for name in sorted(os.listdir(os.path.join(LM, 'lm_eval/tasks', d))):
        if name.endswith('.yaml') and not name.startswith('_'):
            cfg = task_yaml(os.path.join(d, name))
            if cfg.get('description', '').endswith(f'about {domain}.'): return cfg
    raise SystemExit(f'no INCLUDE {language} task for domain {domain}')

out = {'lm_eval_commit': sys.argv[2] if len(sys.argv) > 2 else subprocess.run(['git', '-C', LM, 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip(), 'tasks': {}}
T = out['tasks']
T['belebele_deu_Latn'] = [requests(task_yaml('belebele/belebele_deu_Latn.yaml'), d) for d in jsonl('belebele/data/deu_Latn.jsonl')]
T['xnli_de'] = [requests(task_yaml('xnli/xnli_de.yaml'), d) for d in jsonl('xnli/de/validation.jsonl')]
T['xnli_sw'] = [requests(task_yaml('xnli/xnli_sw.yaml'), d) for d in jsonl('xnli/sw/test.jsonl')]
T['xquad_de'] = [requests(task_yaml('xquad/xquad_de.yaml'), d) for d in squad('xquad/xquad.de.json')]
T['xcopa_sw'] = [requests(task_yaml('xcopa/default_sw.yaml'), d) for d in jsonl('xcopa/sw/test.jsonl')]
T['xwinograd_en'] = [requests(task_yaml('xwinograd/xwinograd_en.yaml'), d) for d in jsonl('xwinograd/data/en/test.jsonl')]
T['mmlu_en'] = [requests(mmlu_cfg(d['subject']), d) for d in jsonl('mmlu/en/test.jsonl')]
T['mmmlu_de'] = [requests(mmlu_cfg(d['subject']), d) for d in mmmlu('mmlu/test/mmlu_DE-DE.csv')]
T['include_indonesian'] = [requests(include_cfg('Indonesian', d['domain']), d) for d in jsonl('include/Indonesian/test.jsonl')]
json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
sys.stdout.write('\n')
