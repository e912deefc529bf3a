"""hyperopt's own MongoTrials tests, run against Caviar's MongoTrials and ``python -m worker`` processes.

Copied from hyperopt 0.3.0 (sdist, ``hyperopt/tests/integration/test_mongoexp.py``;
Copyright (c) 2013, James Bergstra, BSD licence: see hyperopt's LICENSE.txt) with
these changes only, each marked "CAVIAR:" where it is made:

- ``TempMongo`` gives each test a fresh database on the suite's server (nx-27017,
  or $MONGO_URL's MongoDB) instead of starting ``mongod``;
- hyperopt's ``MongoWorker`` threads are replaced by Caviar worker processes;
- ``passthrough`` no longer checks hyperopt's worker working directory (Caviar
  workers have none);
- the tests of hyperopt's own classes (``MongoJobs``, ``MongoWorker``,
  ``parse_url``, ``main_worker_helper``) are left out: Caviar does not have them.
"""

import pickle as pickle
import threading
import time
import unittest

import numpy as np
import pytest

import hyperopt.tests.test_base
from hyperopt import hp, rand
from hyperopt.base import JOB_STATE_DONE, STATUS_OK
from hyperopt.fmin import fmin
from hyperopt.mongoexp import as_mongo_str
from hyperopt.tests.unit.test_domains import gauss_wave2

from optimizer.trials import MongoTrials  # CAVIAR: ours, not hyperopt.mongoexp's
from tests.conftest import Workers
from tests.helpers.server import with_database


class TempMongo:
    """CAVIAR: a fresh database (per test and per ``dbname``) on the suite's server.

    with TempMongo() as foo:
        trials = MongoTrials(foo.connection_string('test1'))
    """

    server = ""  # mongodb://host:port/<this test's database>, set by the fixture below

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    @staticmethod
    def connection_string(dbname):
        url = TempMongo.server
        hostport, prefix = url.split("://", 1)[1].split("/", 1)
        return as_mongo_str(f"{hostport}/{prefix}_{dbname}/jobs")


@pytest.fixture(autouse=True)
def _temp_mongo(mongo_url, workers, request):
    """CAVIAR: the server for TempMongo, and worker processes for the multi-worker tests."""
    TempMongo.server = mongo_url
    if request.instance is not None:
        request.instance.workers = workers
    yield
    import pymongo

    with pymongo.MongoClient(mongo_url) as client:
        prefix = mongo_url.rsplit("/", 1)[1] + "_"
        for name in client.list_database_names():
            if name.startswith(prefix):
                client.drop_database(name)


def start_workers(workers: Workers, dbname: str, n: int, *args: str) -> list:
    """CAVIAR: ``n`` worker processes serving every experiment of ``dbname``."""
    url = with_database(TempMongo.server, TempMongo.connection_string(dbname).rsplit("/", 2)[1])
    return [workers.start(url, "--lease-seconds", "10", *args) for _ in range(n)]


class TestMongoTrials(hyperopt.tests.test_base.TestTrials):
    def setUp(self):
        self.temp_mongo = TempMongo()
        self.temp_mongo.__enter__()
        self.trials = MongoTrials(
            self.temp_mongo.connection_string("foo"), exp_key=None
        )

    def tearDown(self, *args):
        self.temp_mongo.__exit__(*args)


def with_mongo_trials(f, exp_key=None):
    def wrapper():
        with TempMongo() as temp_mongo:
            trials = MongoTrials(temp_mongo.connection_string("foo"), exp_key=exp_key)
            print("Length of trials: ", len(trials.results))
            f(trials)

    wrapper.__name__ = f.__name__
    return wrapper


@with_mongo_trials
def test_with_temp_mongo(trials):
    pass  # -- just verify that the decorator can run


@with_mongo_trials
def test_new_trial_ids(trials):
    a = trials.new_trial_ids(1)
    b = trials.new_trial_ids(2)
    c = trials.new_trial_ids(3)

    assert len(a) == 1
    assert len(b) == 2
    assert len(c) == 3
    s = set()
    s.update(a)
    s.update(b)
    s.update(c)
    assert len(s) == 6


@with_mongo_trials
def test_attachments(trials):
    blob = b"abcde"
    assert "aname" not in trials.attachments
    trials.attachments["aname"] = blob
    assert "aname" in trials.attachments
    assert trials.attachments["aname"] == blob
    assert trials.attachments["aname"] == blob

    blob2 = b"zzz"
    trials.attachments["aname"] = blob2
    assert "aname" in trials.attachments
    assert trials.attachments["aname"] == blob2
    assert trials.attachments["aname"] == blob2

    del trials.attachments["aname"]
    assert "aname" not in trials.attachments


@with_mongo_trials
def test_delete_all_on_attachments(trials):
    trials.attachments["aname"] = "a"
    trials.attachments["aname2"] = "b"
    assert "aname2" in trials.attachments
    trials.delete_all()
    assert "aname" not in trials.attachments
    assert "aname2" not in trials.attachments


def passthrough(x):
    # CAVIAR: no check of hyperopt's worker working directory
    return x


class TestExperimentWithThreads(unittest.TestCase):
    @staticmethod
    def fmin_thread_fn(space, trials, max_evals, seed):
        fmin(
            fn=passthrough,
            space=space,
            algo=rand.suggest,
            trials=trials,
            rstate=np.random.default_rng(seed),
            max_evals=max_evals,
            return_argmin=False,
        )

    def test_seeds_AAB(self):
        # launch 3 simultaneous experiments with seeds A, A, B.
        # Verify all experiments run to completion.
        # Verify first two experiments run identically.
        # Verify third experiment runs differently.

        exp_keys = ["A0", "A1", "B"]
        seeds = [1, 1, 2]
        n_workers = 2
        jobs_per_thread = 6
        # -- total jobs = 2 * 6 = 12
        # -- divided by 3 experiments: 4 jobs per fmin
        max_evals = (n_workers * jobs_per_thread) // len(exp_keys)

        # -- should not matter which domain is used here
        domain = gauss_wave2()

        pickle.dumps(domain.expr)
        pickle.dumps(passthrough)

        # CAVIAR: worker processes instead of MongoWorker threads
        start_workers(self.workers, "foodb", n_workers, "--idle-exit", "3")

        with TempMongo() as tm:
            trials_list = [
                MongoTrials(tm.connection_string("foodb"), key) for key in exp_keys
            ]

            fmin_threads = [
                threading.Thread(
                    target=TestExperimentWithThreads.fmin_thread_fn,
                    args=(domain.expr, trials, max_evals, seed),
                )
                for seed, trials in zip(seeds, trials_list)
            ]

            try:
                [th.start() for th in fmin_threads]
            finally:
                print("joining worker threads...")
                [th.join() for th in fmin_threads]
                self.workers.wait_all(timeout=60)  # CAVIAR

            # -- not using an exp_key gives a handle to all the trials
            #    in foodb
            all_trials = MongoTrials(tm.connection_string("foodb"))
            self.assertEqual(len(all_trials), n_workers * jobs_per_thread)

            # Verify that the fmin calls terminated correctly:
            for trials in trials_list:
                self.assertEqual(
                    trials.count_by_state_synced(JOB_STATE_DONE), max_evals
                )
                self.assertEqual(
                    trials.count_by_state_unsynced(JOB_STATE_DONE), max_evals
                )
                self.assertEqual(len(trials), max_evals)

            # Verify that the first two experiments match.
            # (Do these need sorting by trial id?)
            trials_A0, trials_A1, trials_B0 = trials_list
            self.assertEqual(
                [t["misc"]["vals"] for t in trials_A0.trials],
                [t["misc"]["vals"] for t in trials_A1.trials],
            )

            # Verify that the last experiment does not match.
            # (Do these need sorting by trial id?)
            self.assertNotEqual(
                [t["misc"]["vals"] for t in trials_A0.trials],
                [t["misc"]["vals"] for t in trials_B0.trials],
            )


def objective_with_attachments(x: float):
    """Objective function that includes extra information as attachments and
    dictionary attributes."""
    return {
        "loss": x**2,
        "status": STATUS_OK,
        "extra_stuff": {"type": None, "value": [0, 1, 2]},
        "attachments": {"time": pickle.dumps(time.time)},
    }


def fmin_thread_fn(space, mongo_trials: MongoTrials, max_evals: int):
    fmin(
        fn=objective_with_attachments,
        space=space,
        algo=rand.suggest,
        trials=mongo_trials,
        rstate=np.random.default_rng(),
        max_evals=max_evals,
        return_argmin=False,
    )


def test_trial_attachments(workers):  # CAVIAR: the workers fixture
    exp_key = "A"
    with TempMongo() as tm:
        trials = MongoTrials(tm.connection_string("foo"), exp_key=exp_key)
        space = hp.uniform("x", -10, 10)
        max_evals = 3
        fmin_thread = threading.Thread(
            target=fmin_thread_fn, args=(space, trials, max_evals)
        )
        fmin_thread.start()

        # CAVIAR: a worker process instead of a MongoWorker in this thread
        start_workers(workers, "foo", 1, "--max-trials", str(max_evals))
        fmin_thread.join()
        assert workers.wait_all(timeout=60) == [0], workers.logs()

        all_trials = MongoTrials(tm.connection_string("foo"))
        assert len(all_trials) == max_evals
        assert trials.count_by_state_synced(JOB_STATE_DONE) == max_evals
        assert trials.count_by_state_unsynced(JOB_STATE_DONE) == max_evals
