"""torch's private API that fastload uses exists in the installed torch, as fastload relies on it.

Every name in `fastload.torch_private.NAMES` and attribute in `ATTRIBUTES`
is checked here for its kind, signature and, where it matters, behaviour;
and no module but `fastload/torch_private.py` may name one. After a torch
upgrade, a failure here says what moved; the fix goes in
`fastload/torch_private.py`, and the tested range in pyproject.toml.
"""

import ast
import importlib
import inspect
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from torch.utils.data._utils import worker as torch_worker
from torch.utils.data.dataloader import _BaseDataLoaderIter, _DatasetKind, _SingleProcessDataLoaderIter

import fastload
from fastload import torch_private
from tests.loader.conftest import Shapes

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fastload"
FENCE = PACKAGE / "torch_private.py"


def _resolve(dotted: str):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def _keyword_only(function, name: str) -> bool:
    return inspect.signature(function).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


# For each private name: what fastload relies on, as a check of the object the name resolves to.
NAME_CHECKS = {
    "torch.utils.data.dataloader._DatasetKind": lambda kind: kind.Map != kind.Iterable
    and _params(kind.create_fetcher) == ["kind", "dataset", "auto_collation", "collate_fn", "drop_last"],
    "torch.utils.data.dataloader._BaseDataLoaderIter": lambda cls: inspect.isclass(cls)
    and _params(cls.__init__) == ["self", "loader"]
    and _params(cls._reset) == ["self", "loader", "first_iter"]
    and _params(cls._next_data) == ["self"]
    and _params(cls._next_index) == ["self"],
    "torch.utils.data.dataloader._SingleProcessDataLoaderIter": lambda cls: issubclass(cls, _BaseDataLoaderIter)
    and _params(cls.__init__) == ["self", "loader"],
    "torch.utils.data._utils.collate.collate": lambda f: _params(f) == ["batch", "collate_fn_map"] and _keyword_only(f, "collate_fn_map"),
    "torch.utils.data._utils.collate.collate_tensor_fn": lambda f: _params(f) == ["batch", "collate_fn_map"]
    and _keyword_only(f, "collate_fn_map"),
    "torch.utils.data._utils.collate.default_collate_fn_map": lambda table: isinstance(table, dict)
    and table[torch.Tensor] is _resolve("torch.utils.data._utils.collate.collate_tensor_fn"),
    "torch.utils.data._utils.collate.default_collate": lambda f: callable(f) and _params(f) == ["batch"],
    "torch.utils.data._utils.worker._generate_state": lambda f: _params(f) == ["base_seed", "worker_id"],
    "torch.utils.data._utils.worker.WorkerInfo": lambda cls: {"id", "num_workers", "seed", "dataset"} <= set(_params(cls)),
    "torch.utils.data._utils.worker._worker_info": lambda value: value is None,  # in the main process
    "torch._utils.ExceptionWrapper": lambda cls: _params(cls) == ["exc_info", "where"] and callable(cls.reraise),
    "torch.autograd.profiler._is_profiler_enabled": lambda flag: flag is False,  # no profiler is running
}


def test_every_private_name_the_fence_lists_is_checked_here():
    assert set(NAME_CHECKS) == set(torch_private.NAMES)


@pytest.mark.parametrize("name", sorted(torch_private.NAMES))
def test_each_private_name_exists_in_the_installed_torch_as_fastload_relies_on(name):
    assert NAME_CHECKS[name](_resolve(name)), f"{name} changed in torch {torch.__version__}; see fastload/torch_private.py"


class Items(tud.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.tensor([i, 10 * i])


def _torch_loader():
    return tud.DataLoader(Items(), batch_size=2)


# For each private attribute: a check on torch's own DataLoader (batch_size=2, no workers) or on
# torch's own single-process iterator over it, by the attribute's torch name.
ATTRIBUTE_CHECKS = {
    "DataLoader._get_iterator": lambda loader, it: _params(type(loader)._get_iterator) == ["self"],
    "DataLoader._iterator": lambda loader, it: loader._iterator is None,
    "DataLoader._dataset_kind": lambda loader, it: loader._dataset_kind == _DatasetKind.Map,
    "DataLoader._auto_collation": lambda loader, it: loader._auto_collation is True,
    "_BaseDataLoaderIter._reset": lambda loader, it: _params(it._reset) == ["loader", "first_iter"],
    "_BaseDataLoaderIter._next_data": lambda loader, it: _params(it._next_data) == [],
    "_BaseDataLoaderIter._next_index": lambda loader, it: it._next_index() == [0, 1],
    "_BaseDataLoaderIter._sampler_iter": lambda loader, it: next(it._sampler_iter) == [0, 1],
    "_BaseDataLoaderIter._num_yielded": lambda loader, it: it._num_yielded == 0,
    "_BaseDataLoaderIter._base_seed": lambda loader, it: isinstance(it._base_seed, int),
    "_BaseDataLoaderIter._IterableDataset_len_called": lambda loader, it: it._IterableDataset_len_called is None,
    "_BaseDataLoaderIter._dataset": lambda loader, it: it._dataset is loader.dataset,
    "_BaseDataLoaderIter._dataset_kind": lambda loader, it: it._dataset_kind == _DatasetKind.Map,
    "_BaseDataLoaderIter._auto_collation": lambda loader, it: it._auto_collation is True,
    "_BaseDataLoaderIter._drop_last": lambda loader, it: it._drop_last is False,
    "_BaseDataLoaderIter._num_workers": lambda loader, it: it._num_workers == 0,
    "_BaseDataLoaderIter._pin_memory": lambda loader, it: it._pin_memory is False,
    "_BaseDataLoaderIter._timeout": lambda loader, it: it._timeout == 0,
    "_BaseDataLoaderIter._persistent_workers": lambda loader, it: it._persistent_workers is False,
}


def test_every_private_attribute_the_fence_lists_is_checked_here():
    assert set(ATTRIBUTE_CHECKS) == set(torch_private.ATTRIBUTES)


@pytest.mark.parametrize("name", sorted(torch_private.ATTRIBUTES))
def test_each_private_attribute_exists_on_torchs_loader_and_iterator_as_fastload_relies_on(name):
    loader = _torch_loader()
    iterator = _SingleProcessDataLoaderIter(loader)
    assert ATTRIBUTE_CHECKS[name](loader, iterator), f"{name} changed in torch {torch.__version__}; see fastload/torch_private.py"


def test_the_fences_properties_read_torchs_iterator_state():
    iterator = torch_private.SingleProcessIterator(_torch_loader())
    assert (iterator.num_workers, iterator.timeout, iterator.drop_last, iterator.pin_memory, iterator.persistent_workers) == (0, 0, False, False, False)
    assert iterator.auto_collation is True and iterator.dataset_kind == torch_private.DatasetKind.Map and iterator.reported_len is None
    assert isinstance(iterator.dataset, Items) and isinstance(iterator.base_seed, int)
    assert iterator.next_index() == [0, 1]
    iterator.sampler_iter = iter([[4, 5]])
    assert torch.equal(next(iterator), torch.tensor([[4, 40], [5, 50]]))
    assert iterator.num_yielded == 1
    iterator.base_seed = 7
    assert iterator._base_seed == 7


def test_fastloads_own_names_on_the_fence_classes_shadow_nothing_of_torchs():
    loader = _torch_loader()
    iterator = _SingleProcessDataLoaderIter(loader)
    ours = {  # fence class: (torch's class, an instance of it, torch's hooks it overrides on purpose)
        torch_private.LoaderBase: (tud.DataLoader, loader, {"_get_iterator"}),
        torch_private.IteratorBase: (_BaseDataLoaderIter, iterator, {"_reset", "_next_data"}),
        torch_private.SingleProcessIterator: (_SingleProcessDataLoaderIter, iterator, set()),
    }
    for fence, (base, instance, hooks) in ours.items():
        names = {n for klass in fence.__mro__ if klass.__module__ == torch_private.__name__ for n in vars(klass) if not n.startswith("__")}
        clashes = {n for n in names - hooks if hasattr(base, n) or n in vars(instance)}
        assert not clashes, f"torch {torch.__version__} now has {sorted(clashes)} on {base.__name__}; rename them in fastload/torch_private.py"


def test_torch_calls_the_hooks_the_fence_turns_into_fastloads():
    calls = []

    class Iterator(torch_private.IteratorBase):
        def __init__(self, loader):
            super().__init__(loader)
            self.new_epoch(loader, first=True)

        def new_epoch(self, loader, *, first):
            calls.append(("new_epoch", first))
            super().new_epoch(loader, first=first)

        def next_batch(self):
            return self.next_index()

    class Loader(torch_private.LoaderBase):
        def _new_iterator(self):
            calls.append("new_iterator")
            return Iterator(self)

    # persistent_workers keeps the iterator across epochs (the workers are never started here).
    loader = Loader(range(6), batch_size=2, num_workers=1, persistent_workers=True)
    assert loader._map_style and loader._index_sampler_object is loader.batch_sampler and loader._persistent_iterator is None
    first, second = list(loader), list(loader)
    assert first == second == [[0, 1], [2, 3], [4, 5]]
    assert calls == ["new_iterator", ("new_epoch", True), ("new_epoch", False)]
    assert isinstance(loader._persistent_iterator, Iterator)


def _numpy_state_in_worker(_):
    info = tud.get_worker_info()
    return {"id": info.id, "seed": info.seed, "numpy": torch.from_numpy(np.random.get_state()[1][:4].astype(np.int64))}


def test_a_worker_seeded_through_the_fence_draws_what_torchs_own_workers_draw():
    loader = tud.DataLoader([0, 1, 2, 3], batch_size=None, num_workers=2, collate_fn=_numpy_state_in_worker)
    for got in loader:  # torch's own workers
        base_seed = got["seed"] - got["id"]
        expected = np.random.RandomState(torch_private.numpy_seed(base_seed, got["id"])).get_state()[1][:4]
        assert got["numpy"].tolist() == expected.tolist()


def test_worker_info_set_through_the_fence_is_what_get_worker_info_returns():
    dataset = Items()
    try:
        torch_private.set_worker_info(worker_id=1, num_workers=3, seed=99, dataset=dataset)
        info = tud.get_worker_info()
        assert (info.id, info.num_workers, info.seed, info.dataset) == (1, 3, 99, dataset)
    finally:
        torch_worker._worker_info = None  # this is the main process, not a worker


def test_an_exception_wrapper_survives_pickling_and_reraises_the_same_type_with_where_and_traceback():
    try:
        {}["missing"]
    except KeyError:
        wrapper = torch_private.ExceptionWrapper(where="in DataLoader worker process 3")
    copy = pickle.loads(pickle.dumps(wrapper))
    assert isinstance(copy, torch_private.ExceptionWrapper)
    with pytest.raises(KeyError, match="in DataLoader worker process 3") as error:
        copy.reraise()
    assert "Original Traceback" in str(error.value)


def test_the_profiler_flag_is_up_exactly_while_a_profiler_runs():
    assert torch_private.profiler_enabled() is False
    with torch.autograd.profiler.profile():
        assert torch_private.profiler_enabled() is True
    assert torch_private.profiler_enabled() is False


def test_collate_with_torchs_map_is_default_collate_and_both_names_of_default_collate_are_recognised():
    batch = [{"x": torch.tensor([i, i]), "y": np.float32(i), "name": f"n{i}"} for i in range(3)]
    ours = torch_private.collate(batch, collate_fn_map=torch_private.default_collate_fn_map)
    theirs = tud.default_collate(batch)
    assert torch.equal(ours["x"], theirs["x"]) and torch.equal(ours["y"], theirs["y"]) and ours["name"] == theirs["name"]
    assert torch.equal(torch_private.collate_tensor_fn([torch.ones(2), torch.zeros(2)]), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch_private.is_default_collate(tud.default_collate)
    assert torch_private.is_default_collate(_resolve("torch.utils.data._utils.collate.default_collate"))
    assert not torch_private.is_default_collate(lambda batch: batch)


# -- the fence holds: no other module names torch's private API ------------------------------------

TORCH_HOOKS = {name.split(".")[1] for name in torch_private.ATTRIBUTES if name.split(".")[1] in ("_get_iterator", "_reset", "_next_data", "_next_index")}
TORCH_ATTRIBUTES = {name.split(".")[1] for name in torch_private.ATTRIBUTES}
SUBCLASSING_TORCH = [PACKAGE / "loader.py", *sorted((PACKAGE / "workers").glob("*.py"))]  # where such names would be torch's


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def _private_torch_uses(source: str) -> list[str]:
    """Private torch modules and names `source` imports, and private attributes it reads off torch modules."""
    tree = ast.parse(source)
    torch_aliases, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    torch_aliases.add(alias.asname or "torch")
                    if _private(alias.name):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            for alias in node.names:
                if _private(node.module) or _private(alias.name):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                else:
                    torch_aliases.add(alias.asname or alias.name)
    inner = set()  # attributes inside a longer chain already looked at (ast.walk visits the outer first)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                inner.add(id(value))
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in torch_aliases and _private(".".join(chain)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_but_the_fence_imports_or_reads_a_private_torch_name():
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != FENCE and "assets" not in path.parts and (uses := _private_torch_uses(path.read_text()))
    }
    assert not offenders, f"reach these through fastload/torch_private.py: {offenders}"


def test_the_loader_and_workers_touch_no_private_attribute_or_hook_of_torchs_classes():
    offenders = []
    for path in SUBCLASSING_TORCH:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in TORCH_ATTRIBUTES:
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and node.name in TORCH_HOOKS:
                offenders.append(f"{path.name}:{node.lineno}: def {node.name} (a torch hook)")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in TORCH_ATTRIBUTES:
                offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")  # getattr(obj, "_iterator")
    assert not offenders, f"reach these through fastload/torch_private.py: {offenders}"


def test_the_scan_finds_private_torch_imports_and_attributes_and_passes_public_ones():
    source = (
        "import torch\nimport torch.utils.data as tud\nfrom torch._utils import ExceptionWrapper\n"
        "from torch.utils.data.dataloader import _DatasetKind, DataLoader\n"
        "x = torch.autograd.profiler._is_profiler_enabled\ny = tud._utils.collate.collate\n"
        "z = torch.cuda.is_available() and DataLoader.__init__ and tud.default_collate\n"
    )
    assert _private_torch_uses(source) == [
        "line 3: from torch._utils import ExceptionWrapper",
        "line 4: from torch.utils.data.dataloader import _DatasetKind",
        "line 5: torch.autograd.profiler._is_profiler_enabled",
        "line 6: tud._utils.collate.collate",
    ]


def test_pyproject_states_a_torch_range_that_the_installed_torch_satisfies():
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"torch>=(\d+)\.(\d+),<(\d+)"', text)
    assert match, "pyproject.toml should state torch's range as torch>=A.B,<C"
    low, high = (int(match[1]), int(match[2])), int(match[3])
    installed = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
    assert low <= installed and installed[0] < high, f"torch {torch.__version__} is outside the range in pyproject.toml"
    assert "Tested with torch 2.13" in text and "fastload/torch_private.py" in text


def test_a_torch_without_a_private_name_gets_a_clear_import_error(monkeypatch):
    import importlib
    import sys

    import torch.utils.data.dataloader as dataloader

    monkeypatch.delattr(dataloader, "_DatasetKind")
    saved = sys.modules.pop("fastload.torch_private")
    try:
        with pytest.raises(ImportError, match="tested with torch 2.13 .* install torch 2.13"):
            importlib.import_module("fastload.torch_private")
    finally:
        sys.modules["fastload.torch_private"] = saved


def test_under_a_profiler_the_loader_goes_through_torchs_own_next_and_is_recorded_under_its_name():
    loader = fastload.DataLoader(Shapes(24), batch_size=4, num_workers=2)
    with torch.autograd.profiler.profile() as profile:
        labels = [b["label"].clone() for b in loader]
    assert torch.equal(torch.cat(labels), torch.arange(24) % 7)
    recorded = {event.key: event.count for event in profile.key_averages()}
    assert recorded["enumerate(DataLoader)#PoolIterator.__next__"] == 7  # 6 batches, then StopIteration
    state = loader.state_dict()
    assert state["batches_yielded"] == 6  # delivered batches are counted on that path too
