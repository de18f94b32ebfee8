"""The SQL of the SQLite store: its schema and every query (values are always parameters)."""

from __future__ import annotations

NOW = "((julianday('now') - 2440587.5) * 86400.0)"
SCHEMA_V1 = """
CREATE TABLE trials (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, trial TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new', token INTEGER NOT NULL DEFAULT 0, worker TEXT,
    heartbeat_at REAL, lost_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX trials_pending ON trials (seq) WHERE status IN ('new', 'interrupted');
CREATE INDEX trials_reserved ON trials (heartbeat_at) WHERE status = 'reserved';
CREATE INDEX trials_status ON trials (status);
CREATE TABLE attempts (
    trial_id TEXT NOT NULL REFERENCES trials (id), number INTEGER NOT NULL,
    token INTEGER NOT NULL, worker TEXT NOT NULL, host TEXT NOT NULL, reserved_at REAL NOT NULL,
    heartbeat_at REAL, outcome TEXT, PRIMARY KEY (trial_id, number)
) WITHOUT ROWID;
"""
JOURNEY_V2 = """
ALTER TABLE trials ADD COLUMN not_before REAL;
CREATE TABLE experiments (
    name TEXT NOT NULL, version INTEGER NOT NULL, command TEXT NOT NULL, config TEXT,
    code_version TEXT, created_at REAL NOT NULL, PRIMARY KEY (name, version)
);
"""
"""A trial held back after its script interrupted itself (``not_before``, by the store's
clock), and what each experiment version ran (its command, config template and code)."""
WORKERS_V3 = """
CREATE TABLE workers (
    name TEXT PRIMARY KEY, host TEXT NOT NULL DEFAULT '', pid INTEGER, job_id TEXT, task_id TEXT,
    running INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'running',
    started_at REAL, beat_at REAL
);
"""
"""Who runs the trials: each worker's host, job, task, trials running and last beat."""
HOLDERS_V4 = """
ALTER TABLE trials ADD COLUMN holder TEXT NOT NULL DEFAULT ''
"""
"""Version 4: who holds each lease (host/pid/process start), so a dead local holder is seen."""
_OBJECTIVE_OF = """(
        SELECT r.value ->> '$.value' FROM json_each({outcome}, '$.results') AS r
        WHERE r.value ->> '$.type' = 'objective' AND json_type(r.value, '$.value') = 'real'
        ORDER BY r.key LIMIT 1
    )"""
"""The objective in an outcome's JSON, as ``Outcome.objective`` reads it: the first result of
type ``objective`` whose value is a float. Part of migration 5: never to be changed."""
BEST_V5 = f"""
ALTER TABLE trials ADD COLUMN objective REAL;
CREATE TRIGGER attempts_rank AFTER UPDATE OF outcome ON attempts BEGIN
    UPDATE trials SET objective = {_OBJECTIVE_OF.format(outcome="NEW.outcome")}
    WHERE id = NEW.trial_id AND token = NEW.number;
END;
UPDATE trials SET objective = (
    SELECT {_OBJECTIVE_OF.format(outcome="a.outcome")} FROM attempts AS a
    WHERE a.trial_id = trials.id AND a.number = trials.token
) WHERE status = 'completed';
CREATE INDEX trials_best ON trials (objective, seq) WHERE status = 'completed'
"""
"""Version 5: a trial's objective beside it, for the index that finds the best trial. The
database keeps it: whenever an attempt's outcome is written, a trigger copies its objective to
the trial if that is the trial's latest attempt, whatever writes it (a worker of an earlier
release still running, too). The completed trials of an older store get theirs from their
latest attempt's outcome."""
DIRECTION_V6 = "ALTER TABLE experiments ADD COLUMN maximize INTEGER NOT NULL DEFAULT 0"
"""Version 6: each experiment version's direction (1: higher objectives are better), so that
every command ranks its trials as the run that recorded it did."""
SEARCH_V7 = "ALTER TABLE experiments ADD COLUMN search TEXT"
"""Version 7 (search): what an experiment version searches (its space, sampler, pruner, seed,
metric and total, as JSON), so that every worker of the store suggests from the same plan."""
VALUES_V8 = """
CREATE TABLE trial_values (
    seq INTEGER PRIMARY KEY, trial_id TEXT NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    UNIQUE (trial_id, step)
)
"""
"""Version 8 (pruning across a fleet): each trial's objective at each step its script reported,
in the order recorded (``seq``), for every worker's pruner to read on from where it stopped."""
RECLAIMS_V9 = """
CREATE TABLE reclaims (seq INTEGER PRIMARY KEY, worker TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX reclaims_at ON reclaims (at)
"""
"""Version 9 (losses on evidence): each lease the store took back from its holder (dead, silent
or frozen), by its worker's name and when, so that a suspect's death is charged only when no
other worker lost a lease meanwhile (``_rules.is_judged``)."""
MIGRATIONS = (
    SCHEMA_V1,
    JOURNEY_V2,
    WORKERS_V3,
    HOLDERS_V4,
    BEST_V5,
    DIRECTION_V6,
    SEARCH_V7,
    VALUES_V8,
    RECLAIMS_V9,
)
"""The schema's history: entry N (from 0) takes a store from version N to N + 1. A change to the
schema appends an entry (additive: new tables, new columns with defaults) and never edits one, so
that a store written by an earlier release opens in this one."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this library writes, kept in the ``schema_version`` table."""
_WORKER_COLUMNS = "name, host, pid, job_id, task_id, running, state"
REGISTER_WORKER = f"""
INSERT INTO workers ({_WORKER_COLUMNS}, started_at, beat_at) VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}, {NOW})
ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    job_id = excluded.job_id, task_id = excluded.task_id, running = excluded.running,
    state = excluded.state, started_at = excluded.started_at, beat_at = excluded.beat_at
"""
BEAT_WORKER = f"""
INSERT INTO workers ({_WORKER_COLUMNS}, started_at, beat_at) VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}, {NOW})
ON CONFLICT (name) DO UPDATE SET running = excluded.running, state = excluded.state,
    beat_at = excluded.beat_at
"""
WORKERS = f"SELECT {_WORKER_COLUMNS}, started_at, beat_at FROM workers ORDER BY started_at DESC"
PICK = f"""
SELECT seq FROM trials INDEXED BY trials_pending WHERE status IN ('new', 'interrupted')
AND (NOT :hold OR not_before IS NULL OR not_before <= {NOW})
AND id NOT IN (SELECT value FROM json_each(:skip))
AND (:suspects OR lost_count = 0)
ORDER BY seq LIMIT :n
"""
"""The query ``reserve`` picks its ``:n`` trials with: the first entries of the partial index of
pending trials, however many finished ones the table holds (without ``INDEXED BY`` and before
``ANALYZE``, SQLite prefers the status index and sorts every pending trial). Without
``suspects``, trials that lost a lease before are passed over."""
RESERVE = f"""
UPDATE trials SET status = 'reserved', token = token + 1, worker = :worker, holder = :holder,
    heartbeat_at = {NOW}, not_before = NULL
WHERE seq IN ({PICK})
RETURNING seq, id, trial, token, heartbeat_at, lost_count
"""
"""Reserve up to ``:n`` trials at once (the rows come back in no set order)."""
ATTEMPT = """
INSERT INTO attempts (trial_id, number, token, worker, host, reserved_at, heartbeat_at)
VALUES (:trial_id, :token, :token, :worker, :host, :now, :now)
"""
UNRESERVE = """
UPDATE trials SET status = CASE WHEN token > 1 THEN 'interrupted' ELSE 'new' END,
    token = token - 1
WHERE id = :id AND token = :token AND status = 'reserved' RETURNING id
"""
"""Undo a reservation that never started (the attempt's number is given back)."""
UNRESERVE_ATTEMPT = "DELETE FROM attempts WHERE trial_id = :id AND number = :token"
BEAT_MANY = f"""
UPDATE trials SET heartbeat_at = {NOW}
FROM (SELECT value ->> 0 AS id, value ->> 1 AS token FROM json_each(?)) AS u
WHERE trials.id = u.id AND trials.token = u.token AND +trials.status = 'reserved'
RETURNING trials.id, trials.token, trials.heartbeat_at
"""
"""``BEAT`` for a JSON list of ``[trial id, token]`` leases: one statement for them all. The
unary ``+`` keeps SQLite from the status index (it would read every reserved trial for each
lease): it looks each lease up by id."""
BEAT_ATTEMPTS = """
UPDATE attempts SET heartbeat_at = u.at
FROM (SELECT value ->> 0 AS id, value ->> 1 AS number, value ->> 2 AS at FROM json_each(?)) AS u
WHERE attempts.trial_id = u.id AND attempts.number = u.number
"""
FINISH = f"""
UPDATE trials SET lost_count = lost_count + :lost,
    not_before = CASE WHEN :hold > 0 THEN {NOW} + :hold ELSE NULL END,
    status = CASE WHEN :lost AND lost_count + 1 > :max_lost THEN 'broken' ELSE :status END
WHERE id = :id AND status = 'reserved' AND token = :token RETURNING status
"""
_ALIVE = "holder IN (SELECT value FROM json_each(:alive))"
RECLAIM = f"""
UPDATE trials INDEXED BY trials_reserved SET status = 'interrupted'
WHERE status = 'reserved' AND heartbeat_at <= {NOW} - :older_than
AND (:spare = '' OR holder != :spare)
AND (holder NOT IN (SELECT value FROM json_each(:running))
    OR (:wedged IS NOT NULL AND heartbeat_at <= {NOW} - :wedged))
RETURNING id, token, worker, lost_count, {_ALIVE}
"""
"""The stale leases taken back, uncharged as yet: see ``RECORD_RECLAIM`` and ``CHARGE``."""
NEXT_STALE = f"""
SELECT :older_than - ({NOW} - min(heartbeat_at)) FROM trials INDEXED BY trials_reserved
WHERE status = 'reserved' AND (:spare = '' OR holder != :spare)
AND holder NOT IN (SELECT value FROM json_each(:running))
"""
"""Seconds until the oldest lease that ``RECLAIM`` left (spared or running holders' aside) is
``older_than`` old (``NULL``: none is held)."""
HELD = """
SELECT id, token, holder FROM trials INDEXED BY trials_reserved
WHERE status = 'reserved' AND substr(holder, 1, length(:prefix)) = :prefix AND holder != ''
"""
RECLAIM_LEASE = """
UPDATE trials SET status = 'interrupted'
WHERE id = :id AND token = :token AND status = 'reserved' RETURNING id, token, worker, lost_count
"""
RECORD_RECLAIM = f"INSERT INTO reclaims (worker, at) VALUES (coalesce(?, ''), {NOW})"
AROUND = """
SELECT EXISTS (
    SELECT 1 FROM reclaims INDEXED BY reclaims_at WHERE at >= (
        SELECT reserved_at FROM attempts WHERE trial_id = :id AND number IN (:token - 1, :token)
        ORDER BY number LIMIT 1
    ) AND worker NOT IN (SELECT worker FROM attempts WHERE trial_id = :id)
)
"""
"""Whether a worker that never ran the trial lost a lease to a reclaim since the trial's previous
attempt began (this one's, for a first attempt): then its death is no evidence against it."""
CHARGE = """
UPDATE trials SET lost_count = lost_count + 1,
    status = CASE WHEN lost_count + 1 > :max_lost THEN 'broken' ELSE 'interrupted' END
WHERE id = :id AND token = :token
"""
"""Count a loss against a trial whose lease was taken back (interrupted, or broken past
``max_lost``)."""
CHARGED = """
SELECT t.status, t.lost_count, a.outcome, latest.outcome FROM trials AS t
JOIN attempts AS a ON a.trial_id = t.id AND a.number = :token AND a.worker = :worker
LEFT JOIN attempts AS latest ON latest.trial_id = t.id AND latest.number = t.token
WHERE t.id = :id
"""
"""A lease's attempt as ``clear_losses`` reads it: the trial's status and lost count, the
attempt's outcome (if the lease's worker made it), and the trial's latest attempt's outcome."""
CLEAR = "UPDATE trials SET status = :status, lost_count = :lost_count WHERE id = :id"
TRIALS = "SELECT id, trial, status, token, worker, heartbeat_at, lost_count FROM trials"
BEST = """ WHERE id = (
    SELECT id FROM trials INDEXED BY trials_best WHERE status = 'completed' AND objective = (
        SELECT objective FROM trials INDEXED BY trials_best
        WHERE status = 'completed' AND objective IS NOT NULL ORDER BY objective {order} LIMIT 1
    ) ORDER BY seq LIMIT 1
)"""
"""The condition ``best`` appends to ``TRIALS``: the first added of the completed trials with
the lowest (``ASC``) or highest (``DESC``) objective, both found in ``trials_best`` (named: SQLite
would take the status index and sort every completed trial)."""
COUNTS = "SELECT status, count(*) FROM trials GROUP BY status"
KNOWN = "SELECT id, trial FROM trials WHERE id IN (SELECT value FROM json_each(?))"
COUNTS_OF = """
SELECT status, count(*) FROM trials WHERE id IN (SELECT value FROM json_each(?)) GROUP BY status
"""
RERUN = """
UPDATE trials SET status = 'new', lost_count = 0, not_before = NULL
WHERE id IN (SELECT value FROM json_each(?)) AND status IN (SELECT value FROM json_each(?))
"""
EXPERIMENT = """
SELECT name, version, command, config, code_version, created_at, maximize, search
FROM experiments WHERE name = ? ORDER BY version DESC LIMIT 1
"""
ADD_EXPERIMENT = f"""
INSERT INTO experiments
    (name, version, command, config, code_version, maximize, search, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}) ON CONFLICT (name, version) DO NOTHING
"""
REPLACE_EXPERIMENT = f"""
INSERT INTO experiments
    (name, version, command, config, code_version, maximize, search, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}) ON CONFLICT (name, version) DO UPDATE SET
    command = excluded.command, config = excluded.config, code_version = excluded.code_version,
    maximize = excluded.maximize, search = excluded.search
"""
RECORD_VALUES = """
INSERT INTO trial_values (trial_id, step, value) SELECT :trial_id, :step, :value
WHERE :token IS NULL OR EXISTS (
    SELECT 1 FROM trials WHERE id = :trial_id AND token = :token AND status = 'reserved'
) ON CONFLICT DO NOTHING
"""
"""A value, kept only while its trial is reserved under its token (if it has one). Named
parameters, given as mappings: Python 3.12 warns of numbered ones (``?1``) given a sequence."""
VALUES_AFTER = (
    "SELECT seq, trial_id, step, value FROM trial_values WHERE seq > ? ORDER BY seq LIMIT ?"
)
"""The values recorded after a cursor: SQLite's writes take turns, so ``seq`` is commit order."""
ATTEMPTS = """
SELECT trial_id, number, token, worker, host, reserved_at, heartbeat_at, outcome FROM attempts
"""
