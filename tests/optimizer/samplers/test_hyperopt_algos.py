"""hyperopt's algorithms behind the sampler interface."""

from hyperopt import Domain, Trials, hp, rand

from optimizer.samplers.hyperopt_algos import HyperoptSampler

SPACE = {"x": hp.uniform("x", -1, 1), "c": hp.choice("c", [None, {"y": hp.loguniform("y", -3, 0)}])}


def _history(domain: Domain, n: int) -> list[dict]:
    """``n`` finished trials of ``domain``, as the store holds them."""
    trials = Trials()
    docs = rand.suggest(list(range(n)), domain, trials, 7)
    for i, doc in enumerate(docs):
        doc.update(state=2, result={"status": "ok", "loss": float(i)})
    return docs


def test_random_search_without_the_history_proposes_what_it_proposes_with_it() -> None:
    domain = Domain(lambda p: 0.0, SPACE)
    docs = _history(domain, 30)
    with_history = HyperoptSampler(domain, rand.suggest)
    without = HyperoptSampler(domain, rand.suggest, history=False)
    for tid in range(30, 40):
        assert without.propose(tid, tid, docs[:20], docs[20:]) == with_history.propose(tid, tid, docs[:20], docs[20:])
