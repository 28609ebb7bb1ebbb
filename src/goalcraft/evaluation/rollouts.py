"""Rollouts of goal-conditioned agents: one small protocol, vectorised across processes, batched inference.

The agent-success evaluation (:mod:`goalcraft.evaluation.agent_success`) drives any agent and
environment through two protocols:

* :class:`GoalEnv`: ``reset(seed, target) -> observation`` and ``step(action) -> (observation,
  achievements unlocked at this step, episode over)``, optionally with a fourth element, the step's
  label (an expert's action for the state the step started from: DAgger's data; kept in
  :attr:`RolloutResult.labels` for recorded episodes). An environment lives in one process.
* :class:`GoalAgent`: ``reset(slot, goal, guidance)`` starts an episode in a slot, ``act(slots,
  observations) -> actions`` acts for many slots at once (one batched forward pass).

:func:`run_rollouts` runs :class:`RolloutRequest` s (world seed, target, step budget, goal, guidance)
in ``slots`` episodes side by side: the environments in ``workers`` processes (or in this one), the
agent here, one batch per tick over every running episode. An episode ends at the first unlock of its
target (success; ``steps`` is the step that unlocked it), when the environment says it is over (the
player died), or after ``max_steps`` steps. Results come back in request order and each is a function
of its request alone (up to float rounding across batch sizes): agents draw their actions from
generators seeded per request, and the environments are deterministic.

Crafter implementations: :class:`CrafterGoalEnv` (the policy's 64x40 frames, a world cache so each
world seed is generated once per process; an action None lets the corpus's scripted agent act: the
ceiling) and :class:`PolicyAgent` (a :class:`~goalcraft.models.policy.GoalConditionedPolicy` with
classifier-free guidance; a request without a goal is left to the environment's player). The
STEVE-1/MineRL pair is :mod:`goalcraft.evaluation.minerl`.
"""

from __future__ import annotations

import collections
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from goalcraft.crafter.deterministic_env import DEFAULT_SIZE, TILE, make_env
from goalcraft.crafter.tasks import ACHIEVEMENTS
from goalcraft.processes import ignore_interrupts, process_context

__all__ = [
    "CrafterGoalEnv",
    "GoalAgent",
    "GoalEnv",
    "NoAgent",
    "PolicyAgent",
    "RolloutPool",
    "RolloutRequest",
    "RolloutResult",
    "run_rollouts",
]


class GoalEnv(Protocol):
    """An environment with achievements (see the module docstring)."""

    def reset(self, seed: int, target: str) -> Any: ...

    def step(self, action: Any) -> tuple[Any, Sequence[str], bool] | tuple[Any, Sequence[str], bool, Any]: ...


class GoalAgent(Protocol):
    """A goal-conditioned agent acting for several episodes ("slots") at once."""

    def reset(self, slot: int, goal: np.ndarray | None, guidance: float, seed: int) -> None: ...

    def act(self, slots: Sequence[int], observations: Sequence[Any]) -> Sequence[Any]: ...


@dataclass(frozen=True, eq=False)
class RolloutRequest:
    """One episode to run: ``goal`` ``[D]`` (None for agents that take none), ``guidance`` λ, and
    ``seed`` for the agent's action sampling (default: the world seed)."""

    world_seed: int
    target: str
    max_steps: int
    goal: np.ndarray | None = field(default=None, repr=False)
    guidance: float = 0.0
    seed: int | None = None


@dataclass(frozen=True, eq=False)
class RolloutResult:
    """What happened: ``success`` (the target unlocked), ``steps`` (to success, else taken),
    ``achievements`` (every achievement unlocked, first unlocks in order), ``died``, and the
    observations when recorded (``record_frames``): the first, every ``frame_stride``-th after it
    and the last; with them the agent's ``actions``, one a step, and ``labels`` when the environment
    labels its steps: step ``t``'s action and label were for frame ``t - 1`` (at ``frame_stride`` 1)."""

    request: RolloutRequest
    success: bool
    steps: int
    achievements: tuple[str, ...]
    died: bool
    frames: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    actions: np.ndarray | None = field(default=None, repr=False)

    @property
    def off_target(self) -> tuple[str, ...]:
        return tuple(a for a in self.achievements if a != self.request.target)


# -- Crafter ---------------------------------------------------------------------------------------


#: Freshly generated worlds of this process, pickled: (seed, frame size) → (env, first observation).
_WORLDS: collections.OrderedDict[tuple[int, tuple[int, int]], bytes] = collections.OrderedDict()


class CrafterGoalEnv:
    """Crafter at the corpus's field of view (16 x 10 tiles) rendered at ``frame_size`` (the policy's
    64x40 by default). A world seed's freshly generated env is kept in this process (pickled, ~100 KB;
    the last ``cache_worlds``) and restored on the next reset with that seed, by any env of the
    process: Crafter's world generation takes about a second, a restore a millisecond, and every goal
    source and guidance scale plays the same worlds."""

    def __init__(self, frame_size: tuple[int, int] = (64, 40), cache_worlds: int = 512, *,
                 expert_labels: bool = False) -> None:
        view = DEFAULT_SIZE[0] // TILE
        if frame_size[0] % view:
            raise ValueError(f"frame width {frame_size[0]} is not a multiple of the {view}-tile view")
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.tile = frame_size[0] // view
        self.cache_worlds = cache_worlds
        self.expert_labels = bool(expert_labels)
        self.env: Any = None
        self._counts: dict[str, int] = {}

    def _fresh(self, seed: int) -> tuple[Any, np.ndarray]:
        key = (seed, self.frame_size)
        blob = _WORLDS.get(key)
        if blob is not None:
            _WORLDS.move_to_end(key)
            env, obs = pickle.loads(blob)
            return env, obs
        env = make_env(seed, self.frame_size, tile=self.tile)
        obs = env.reset()
        if self.cache_worlds:
            _WORLDS[key] = pickle.dumps((env, obs), protocol=pickle.HIGHEST_PROTOCOL)
            while len(_WORLDS) > self.cache_worlds:
                _WORLDS.popitem(last=False)
        return env, obs

    def reset(self, seed: int, target: str) -> np.ndarray:
        self.env, obs = self._fresh(int(seed))
        self._counts = dict.fromkeys(ACHIEVEMENTS, 0)
        self._seed, self._target, self.scripted = int(seed), target, None
        return obs

    def _unlocked(self, info: dict[str, Any]) -> list[str]:
        new = [n for n in ACHIEVEMENTS if info["achievements"][n] > self._counts[n]]
        self._counts = {n: info["achievements"][n] for n in ACHIEVEMENTS}
        return new

    def _scripted(self) -> Any:
        if self.scripted is None:
            from goalcraft.crafter.agent import make_agent

            self.scripted = make_agent(np.random.RandomState(self._seed % (2**32)), self._target)
            if self.expert_labels:
                # As a labeller it names the action it means: no random share, no warm-up wander.
                self.scripted.eps, self.scripted.warmup = 0.0, 0
        return self.scripted

    def step(self, action: Any) -> tuple[np.ndarray, list[str], bool] | tuple[np.ndarray, list[str], bool, int]:
        """One step; ``action`` None: the corpus's scripted agent, pursuing the target, chooses it
        (it reads the world state, so it lives in the env: the ceiling). With ``expert_labels`` that
        agent, without its random actions, also names its action for this state first (the step's
        label, returned fourth: DAgger's expert, goalcraft.training.dagger); the env takes ``action``."""
        label = self._scripted().act(self.env) if self.expert_labels else None
        if action is None:
            action = label if label is not None else self._scripted().act(self.env)
        obs, _reward, done, info = self.env.step(int(action))
        over = bool(done or info["discount"] == 0.0)
        if self.expert_labels:
            return obs, self._unlocked(info), over, int(label)
        return obs, self._unlocked(info), over


class NoAgent:
    """An agent that leaves every action to the environment's own player (action None)."""

    def reset(self, slot: int, goal: np.ndarray | None, guidance: float, seed: int) -> None:
        pass

    def act(self, slots: Sequence[int], observations: Sequence[Any]) -> list[None]:
        return [None] * len(slots)


class PolicyAgent:
    """A :class:`~goalcraft.models.policy.GoalConditionedPolicy` over many slots: a frame stack per
    slot, one guided forward pass per tick, actions sampled per slot from a generator seeded by the
    request (``greedy`` takes the argmax). A slot reset with ``goal`` None is left to the
    environment's own player (action None: the scripted ceiling)."""

    def __init__(self, policy: Any, slots: int, *, device: str = "cpu", greedy: bool = False) -> None:
        from goalcraft.models.policy import FrameStack

        self.policy = policy.eval().to(device)
        self.device = device
        self.greedy = greedy
        config = policy.config
        self.stack = FrameStack(config, slots)
        self.goals = np.zeros((slots, config.goal_dim), np.float32)
        self.guidance = np.zeros(slots, np.float32)
        self.fresh = np.ones(slots, bool)
        self.own = np.zeros(slots, bool)  # the environment's player acts
        self.rngs: list[np.random.Generator | None] = [None] * slots

    def reset(self, slot: int, goal: np.ndarray | None, guidance: float, seed: int) -> None:
        self.own[slot] = goal is None
        self.goals[slot] = 0.0 if goal is None else np.asarray(goal, np.float32)
        self.guidance[slot] = guidance
        self.fresh[slot] = True
        self.rngs[slot] = np.random.default_rng(seed)

    @torch.no_grad()
    def act(self, slots: Sequence[int], observations: Sequence[Any]) -> list[int | None]:
        actions: dict[int, int | None] = {s: None for s in slots if self.own[s]}
        observed = [(s, o) for s, o in zip(slots, observations) if not self.own[s]]
        if observed:
            actions.update(zip((s for s, _ in observed), self._policy_act(*zip(*observed))))
        return [actions[s] for s in slots]

    def _policy_act(self, slots: Sequence[int], observations: Sequence[Any]) -> list[int]:
        slots = list(slots)
        for slot, obs in zip(slots, observations):
            if self.fresh[slot]:
                self.stack.reset(slot, obs)
                self.fresh[slot] = False
            else:
                self.stack.push(np.asarray(obs)[None], [slot])
        frames = self.stack.tensor(slots).to(self.device)
        goals = torch.from_numpy(self.goals[slots]).to(self.device)
        guidance = torch.from_numpy(self.guidance[slots]).to(self.device)
        logits = self.policy.guided_logits(frames, goals, guidance).float().cpu().numpy()
        if self.greedy:
            return logits.argmax(1).tolist()
        probs = np.exp(logits - logits.max(1, keepdims=True))
        cdf = np.cumsum(probs, 1)
        return [int(min(np.searchsorted(cdf[i], self.rngs[s].random() * cdf[i, -1], side="right"), cdf.shape[1] - 1))
                for i, s in enumerate(slots)]


# -- the runner ------------------------------------------------------------------------------------


def _handle(envs: dict[int, Any], command: tuple) -> Any:
    kind, slot, arg = command
    if kind == "reset":
        return envs[slot].reset(*arg)
    return envs[slot].step(arg)


def _worker(conn: Any, env_factory: Callable[[], Any], slots: list[int]) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the run and closes the pipes; a worker
    # whose parent is gone (pipe closed, or the parent killed) just ends, with no traceback of its own.
    ignore_interrupts()
    torch.set_num_threads(1)
    try:
        envs = {s: env_factory() for s in slots}
        while True:
            commands = conn.recv()
            if commands is None:
                break
            try:
                answer = [_handle(envs, c) for c in commands]
            except Exception as exc:  # reported in the parent, which stops
                answer = exc
            conn.send(answer)
    except (EOFError, OSError):  # BrokenPipeError and ConnectionResetError are OSErrors
        pass
    finally:
        conn.close()


class _Envs:
    """``slots`` environments, here or spread over ``workers`` processes; a tick sends every slot's
    command to its process at once and gathers the answers."""

    def __init__(self, env_factory: Callable[[], Any], slots: int, workers: int) -> None:
        self.local: dict[int, Any] = {}
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        self.owner: dict[int, int] = {}
        if workers <= 0:
            self.local = {s: env_factory() for s in range(slots)}
            return
        context = process_context()
        for w in range(workers):
            mine = list(range(w, slots, workers))
            if not mine:
                continue
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(child, env_factory, mine), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
            for s in mine:
                self.owner[s] = len(self.conns) - 1

    def run(self, commands: list[tuple]) -> list[Any]:
        if not self.conns:
            return [_handle(self.local, c) for c in commands]
        batches: dict[int, list[int]] = collections.defaultdict(list)
        for i, c in enumerate(commands):
            batches[self.owner[c[1]]].append(i)
        for w, idx in batches.items():
            self.conns[w].send([commands[i] for i in idx])
        out: list[Any] = [None] * len(commands)
        for w, idx in batches.items():
            answer = self.conns[w].recv()
            if isinstance(answer, Exception):
                raise answer
            for i, value in zip(idx, answer):
                out[i] = value
        return out

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


@dataclass
class _Running:
    index: int
    request: RolloutRequest
    steps: int = 0
    achievements: list[str] = field(default_factory=list)
    frames: list[np.ndarray] | None = None
    labels: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)


class RolloutPool:
    """``slots`` environments (in ``workers`` processes, or here) kept alive across batches of rollouts,
    their world caches with them; :func:`run_rollouts` is one batch in a pool of its own."""

    def __init__(self, env_factory: Callable[[], Any], *, slots: int = 8, workers: int = 0) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.envs = _Envs(env_factory, slots, workers)

    def __enter__(self) -> RolloutPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.envs.close()

    def run(self, agent: Any, requests: Sequence[RolloutRequest], *, record_frames: Callable[[int], bool] | None = None,
            frame_stride: int = 1, progress: Callable[[int, int], None] | None = None, warm: bool = False,
            timings: dict[str, float] | None = None) -> list[RolloutResult]:
        """Run every request (see :func:`run_rollouts`) in this pool's environments."""
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        envs = self.envs
        slots = min(self.slots, max(len(requests), 1))
        results: list[RolloutResult | None] = [None] * len(requests)
        # One queue per process, by world seed, so that a world is generated (and cached) in one process;
        # a process whose queue is empty takes from the longest other one.
        n_queues = max(1, len(envs.conns))
        queues: list[collections.deque] = [collections.deque() for _ in range(n_queues)]
        for item in enumerate(requests):
            queues[item[1].world_seed % n_queues].append(item)
        running: dict[int, _Running] = {}
        observations: dict[int, Any] = {}
        done, steps = 0, 0
        clock = time.perf_counter()
        if warm:
            first = {w: min(s for s, o in envs.owner.items() if o == w) for w in set(envs.owner.values())} or {0: 0}
            envs.run([("reset", first[w], (seed, target)) for w, queue in enumerate(queues)
                      for seed, target in dict.fromkeys((r.world_seed, r.target) for _, r in queue)])
        warmed = time.perf_counter()

        def start(free: list[int]) -> None:
            starts = []
            for slot in free:
                queue = queues[envs.owner.get(slot, 0)]
                if not queue:
                    queue = max(queues, key=len)
                if not queue:
                    break
                index, request = queue.popleft()
                running[slot] = _Running(index, request, frames=[] if record_frames and record_frames(index) else None)
                starts.append(slot)
            for slot, obs in zip(starts, envs.run([("reset", s, (running[s].request.world_seed, running[s].request.target))
                                                   for s in starts])):
                request = running[slot].request
                agent.reset(slot, request.goal, float(request.guidance),
                            request.world_seed if request.seed is None else request.seed)
                observations[slot] = obs
                if running[slot].frames is not None:
                    running[slot].frames.append(np.asarray(obs))

        start(list(range(slots)))
        while running:
            active = sorted(running)
            actions = agent.act(active, [observations[s] for s in active])
            answers = envs.run([("step", s, a) for s, a in zip(active, actions)])
            finished = []
            steps += len(active)
            for slot, action, (obs, unlocked, over, *label) in zip(active, actions, answers):
                run = running[slot]
                run.steps += 1
                if run.frames is not None:
                    run.actions.append(action)
                    if label:
                        run.labels.append(label[0])
                observations[slot] = obs
                run.achievements += [a for a in unlocked if a not in run.achievements]
                success = run.request.target in unlocked
                last = success or over or run.steps >= run.request.max_steps
                # Only every stride-th observation is kept (memory), and the last (the outcome).
                if run.frames is not None and (last or run.steps % frame_stride == 0):
                    run.frames.append(np.asarray(obs))
                if last:
                    results[run.index] = RolloutResult(
                        run.request, success, run.steps, tuple(run.achievements), bool(over and not success),
                        np.stack(run.frames) if run.frames is not None else None,
                        np.asarray(run.labels) if run.frames is not None and run.labels else None,
                        np.asarray(run.actions) if run.frames is not None else None)
                    finished.append(slot)
            for slot in finished:
                del running[slot]
                done += 1
                if progress:
                    progress(done, len(requests))
            start(finished)
        if timings is not None:
            timings.update(warm_s=warmed - clock, run_s=time.perf_counter() - warmed, steps=float(steps))
        return [r for r in results if r is not None]


def run_rollouts(env_factory: Callable[[], Any], agent: Any, requests: Sequence[RolloutRequest], *,
                 slots: int = 8, workers: int = 0, record_frames: Callable[[int], bool] | None = None,
                 frame_stride: int = 1, progress: Callable[[int, int], None] | None = None, warm: bool = False,
                 timings: dict[str, float] | None = None) -> list[RolloutResult]:
    """Run every request (see the module docstring); ``env_factory()`` builds one :class:`GoalEnv`
    (picklable when ``workers`` > 0: it is called in the worker processes), ``agent`` is a
    :class:`GoalAgent` with at least ``slots`` slots. ``record_frames(i)``: keep request ``i``'s
    observations (the first, every ``frame_stride``-th after it, and the last; recording never
    changes what the agent sees or does). ``progress(done, total)`` after each finished episode. ``warm``: first reset every
    world seed once in the process that will play it (environments that cache their worlds then
    generate them before the episodes start). ``timings`` receives ``warm_s``, ``run_s`` and ``steps``.
    A pool that lives for several batches: :class:`RolloutPool`."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    with RolloutPool(env_factory, slots=min(slots, max(len(requests), 1)), workers=workers) as pool:
        return pool.run(agent, requests, record_frames=record_frames, frame_stride=frame_stride, progress=progress,
                        warm=warm, timings=timings)
