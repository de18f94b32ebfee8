"""The SQL of the PostgreSQL store: its schema and every query, for one schema name."""

from __future__ import annotations

import re

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
TABLES_V1 = """
CREATE TABLE {s}.trials (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL UNIQUE,
    trial text NOT NULL, status text NOT NULL DEFAULT 'new', token integer NOT NULL DEFAULT 0,
    worker text, heartbeat_at timestamptz, lost_count integer NOT NULL DEFAULT 0
);
CREATE INDEX trials_pending ON {s}.trials (seq) WHERE status IN ('new', 'interrupted');
CREATE INDEX trials_reserved ON {s}.trials (heartbeat_at) WHERE status = 'reserved';
CREATE INDEX trials_status ON {s}.trials (status);
CREATE TABLE {s}.attempts (
    trial_id text NOT NULL REFERENCES {s}.trials (id), number integer NOT NULL,
    token integer NOT NULL, worker text NOT NULL, host text NOT NULL,
    reserved_at timestamptz NOT NULL, heartbeat_at timestamptz, outcome text,
    PRIMARY KEY (trial_id, number)
);
"""
JOURNEY_V2 = """
ALTER TABLE {s}.trials ADD COLUMN not_before timestamptz;
CREATE TABLE {s}.experiments (
    name text NOT NULL, version integer NOT NULL, command text NOT NULL, config text,
    code_version text, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (name, version)
);
"""
"""A trial held back after its script interrupted itself (``not_before``), and what each
experiment version ran (its command, config template and code)."""
WORKERS_V3 = """
CREATE TABLE {s}.workers (
    name text PRIMARY KEY, host text NOT NULL DEFAULT '', pid integer, job_id text,
    task_id text, running integer NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'running',
    started_at timestamptz, beat_at timestamptz
);
"""
"""Who runs the trials: each worker's host, job, task, trials running and last beat."""
HOLDERS_V4 = "ALTER TABLE {s}.trials ADD COLUMN holder text NOT NULL DEFAULT ''"
"""Version 4: who holds each lease (host/pid/process start), so a dead local holder is seen."""
BEST_V5 = r"""
ALTER TABLE {s}.trials ADD COLUMN objective double precision;
CREATE FUNCTION {s}.objective_of(outcome text) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $objective$
    SELECT (r.value ->> 'value')::float8
    FROM json_array_elements(replace(outcome, '\u0000', '\ufffd')::json -> 'results')
        WITH ORDINALITY AS r (value, n)
    WHERE r.value ->> 'type' = 'objective' AND json_typeof(r.value -> 'value') = 'number'
        AND (r.value -> 'value')::text ~ '[.eE]'
    ORDER BY r.n LIMIT 1
$objective$;
CREATE FUNCTION {s}.rank_attempt() RETURNS trigger LANGUAGE plpgsql AS $rank$
BEGIN
    UPDATE {s}.trials SET objective = {s}.objective_of(NEW.outcome)
    WHERE id = NEW.trial_id AND token = NEW.number;
    RETURN NULL;
END $rank$;
CREATE TRIGGER attempts_rank AFTER UPDATE OF outcome ON {s}.attempts
    FOR EACH ROW EXECUTE FUNCTION {s}.rank_attempt();
UPDATE {s}.trials AS t SET objective = {s}.objective_of(a.outcome) FROM {s}.attempts AS a
WHERE a.trial_id = t.id AND a.number = t.token AND t.status = 'completed';
CREATE INDEX trials_best ON {s}.trials (objective, seq) WHERE status = 'completed';
"""
"""Version 5: a trial's objective beside it, for the index that finds the best trial. The
database keeps it: whenever an attempt's outcome is written, a trigger copies its objective to
the trial if that is the trial's latest attempt, whoever writes it (a worker of an earlier
release still running, too). ``objective_of`` reads it as ``Outcome.objective`` does: the first
result of type ``objective`` whose value is a float (a JSON number written with a point or an
exponent: ``json`` keeps the text, ``jsonb`` would not), after turning an escaped NUL (from a
script's stderr) into U+FFFD, which ``json`` cannot hold. The completed trials of an older store
get theirs from their latest attempt's outcome."""
DIRECTION_V6 = "ALTER TABLE {s}.experiments ADD COLUMN maximize boolean NOT NULL DEFAULT false"
"""Version 6: each experiment version's direction, as in SQLite (``_sqlite_sql.DIRECTION_V6``)."""
SEARCH_V7 = "ALTER TABLE {s}.experiments ADD COLUMN search text"
"""Version 7: each experiment version's search plan, as in SQLite (``_sqlite_sql.SEARCH_V7``)."""
VALUES_V8 = """
CREATE TABLE {s}.trial_values (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, trial_id text NOT NULL,
    step bigint NOT NULL, value double precision NOT NULL, UNIQUE (trial_id, step)
);
"""
"""Version 8: each trial's objective at each step, as in SQLite (``_sqlite_sql.VALUES_V8``)."""
RECLAIMS_V9 = """
CREATE TABLE {s}.reclaims (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, worker text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX reclaims_at ON {s}.reclaims (at);
"""
"""Version 9: each lease the store took back, by worker and time, as in SQLite
(``_sqlite_sql.RECLAIMS_V9``)."""
MIGRATIONS = (
    TABLES_V1,
    JOURNEY_V2,
    WORKERS_V3,
    HOLDERS_V4,
    BEST_V5,
    DIRECTION_V6,
    SEARCH_V7,
    VALUES_V8,
    RECLAIMS_V9,
)
"""The schema's history, as ``_sqlite_sql.MIGRATIONS``; ``{s}`` is the quoted schema."""
SCHEMA_VERSION = len(MIGRATIONS)
_WORKER_COLUMNS = "name, host, pid, job_id, task_id, running, state"
_RECORD_WORKER = """
    INSERT INTO {{s}}.workers ({columns}, started_at, beat_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
    ON CONFLICT (name) DO UPDATE SET {update}"""
_TRIALS = """
    SELECT id, trial, status, token, worker, heartbeat_at, lost_count FROM {{s}}.trials {where}
    ORDER BY seq"""
_BEST = """WHERE id = (
    SELECT id FROM {{s}}.trials WHERE status = 'completed' AND objective = (
        SELECT objective FROM {{s}}.trials WHERE status = 'completed' AND objective IS NOT NULL
        ORDER BY objective {order} LIMIT 1
    ) ORDER BY seq LIMIT 1)"""
"""How ``best`` picks a trial: the first added of the completed trials with the lowest
(``asc``) or highest (``desc``) objective, both found in ``trials_best``."""
PICK = """
    SELECT seq FROM {s}.trials WHERE status IN ('new', 'interrupted')
    AND (NOT $4::boolean OR not_before IS NULL OR not_before <= now())
    AND NOT (id = ANY($3::text[])) AND ($6::boolean OR lost_count = 0)
    ORDER BY seq LIMIT $7::integer FOR UPDATE SKIP LOCKED"""
"""How ``reserve`` picks its ``$7`` trials: the first entries of the partial index of pending
trials that no other transaction holds, however many finished trials the table has (without ``$6``, trials
that lost a lease before are passed over)."""
_LOCKED = """
        SELECT t.id, t.token FROM {s}.trials AS t
        JOIN unnest($1::text[], $2::integer[]) AS u (id, token)
            ON t.id = u.id AND t.token = u.token
        WHERE t.status = 'reserved' ORDER BY t.id FOR UPDATE OF t"""
"""The reserved rows of a batch's leases, locked in the order of their ids: two batches of
one worker (a beat and a group commit over the same leases) never wait for each other in a
circle."""
_QUERIES = {
    "lock": "SELECT pg_advisory_xact_lock(hashtext($1))",
    "create_schema": "CREATE SCHEMA IF NOT EXISTS {s}",
    "version_table": "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)",
    "version": "SELECT max(version) FROM {s}.schema_version",
    "version_table_exists": "SELECT to_regclass('{s}.schema_version') IS NOT NULL",
    "set_version": "INSERT INTO {s}.schema_version VALUES ($1)",
    "add": """
        INSERT INTO {s}.trials (id, trial)
        SELECT id, trial FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u (id, trial, n)
        ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING id""",
    "known": "SELECT id, trial FROM {s}.trials WHERE id = ANY($1::text[])",
    "reserve": """
        WITH picked AS MATERIALIZED ({pick}), leased AS (
            UPDATE {s}.trials SET status = 'reserved', token = token + 1, worker = $1,
                holder = $5, heartbeat_at = now(), not_before = NULL
            WHERE seq IN (SELECT seq FROM picked)
            RETURNING seq, id, trial, token, heartbeat_at, lost_count
        ), attempt AS (
            INSERT INTO {s}.attempts (trial_id, number, token, worker, host, reserved_at,
                heartbeat_at)
            SELECT id, token, token, $1, $2, heartbeat_at, heartbeat_at FROM leased
        ) SELECT trial, token, lost_count FROM leased ORDER BY seq""",
    "beat_many": f"""
        WITH mine AS ({_LOCKED}), beat AS (
            UPDATE {{s}}.trials AS t SET heartbeat_at = now() FROM mine
            WHERE t.id = mine.id AND t.token = mine.token AND t.status = 'reserved'
            RETURNING t.id, t.token, t.heartbeat_at
        ), attempt AS (
            UPDATE {{s}}.attempts AS a SET heartbeat_at = beat.heartbeat_at FROM beat
            WHERE a.trial_id = beat.id AND a.number = beat.token
        ) SELECT id, token FROM beat""",
    "finish_many": f"""
        WITH mine AS ({_LOCKED}), done AS (
            UPDATE {{s}}.trials AS t SET lost_count = t.lost_count + u.lost,
                not_before = CASE WHEN u.hold > 0 THEN now() + make_interval(secs => u.hold) END,
                status = CASE WHEN u.lost = 1 AND t.lost_count + 1 > $3::integer
                    THEN 'broken' ELSE u.status END
            FROM mine, unnest($1::text[], $2::integer[], $4::integer[], $5::text[],
                $6::text[], $7::float8[]) AS u (id, token, lost, status, outcome, hold)
            WHERE t.id = mine.id AND t.token = mine.token AND u.id = mine.id
                AND u.token = mine.token AND t.status = 'reserved'
            RETURNING t.id, t.token, t.status, u.outcome
        ), attempt AS (
            UPDATE {{s}}.attempts AS a SET outcome = done.outcome FROM done
            WHERE a.trial_id = done.id AND a.number = done.token
        ) SELECT id, token, status FROM done""",
    "unreserve": """
        WITH undone AS (
            UPDATE {s}.trials SET status = CASE WHEN token > 1 THEN 'interrupted' ELSE 'new' END,
                token = token - 1
            WHERE id = $1 AND token = $2 AND status = 'reserved' RETURNING id
        ), gone AS (
            DELETE FROM {s}.attempts WHERE trial_id = $1 AND number = $2
                AND EXISTS (SELECT 1 FROM undone)
        ) SELECT count(*) FROM undone""",
    "held": """
        SELECT id, token, holder FROM {s}.trials
        WHERE status = 'reserved' AND starts_with(holder, $1) AND holder != ''""",
    "reclaim_leases": """
        UPDATE {s}.trials AS t SET status = 'interrupted'
        FROM unnest($1::text[], $2::integer[]) AS u (id, token)
        WHERE t.id = u.id AND t.token = u.token AND t.status = 'reserved'
        RETURNING t.id, t.token, t.worker, t.lost_count, false""",
    "finish": """
        WITH done AS (
            UPDATE {s}.trials SET lost_count = lost_count + $3::integer,
                not_before = CASE WHEN $7::float8 > 0
                    THEN now() + make_interval(secs => $7::float8) END,
                status = CASE WHEN $3::integer = 1 AND lost_count + 1 > $4::integer
                    THEN 'broken' ELSE $5::text END
            WHERE id = $1 AND status = 'reserved' AND token = $2 RETURNING status
        ), attempt AS (
            UPDATE {s}.attempts SET outcome = $6 FROM done WHERE trial_id = $1 AND number = $2
        ) SELECT status FROM done""",
    "reclaim": """
        UPDATE {s}.trials SET status = 'interrupted'
        WHERE seq IN (
            SELECT seq FROM {s}.trials
            WHERE status = 'reserved' AND heartbeat_at <= now() - make_interval(secs => $1)
                AND ($2::text = '' OR holder != $2::text)
                AND (NOT holder = ANY($4::text[]) OR ($5::float8 IS NOT NULL
                    AND heartbeat_at <= now() - make_interval(secs => $5::float8)))
            FOR UPDATE SKIP LOCKED
        ) RETURNING id, token, worker, lost_count, holder = ANY($3::text[])""",
    "record_reclaims": """
        INSERT INTO {s}.reclaims (worker, at)
        SELECT coalesce(w, ''), now() FROM unnest($1::text[]) AS w""",
    "around": """
        SELECT u.id FROM unnest($1::text[], $2::integer[]) AS u (id, token)
        WHERE EXISTS (
            SELECT 1 FROM {s}.reclaims AS r WHERE r.at >= (
                SELECT a.reserved_at FROM {s}.attempts AS a
                WHERE a.trial_id = u.id AND a.number IN (u.token - 1, u.token)
                ORDER BY a.number LIMIT 1
            ) AND r.worker NOT IN (SELECT a.worker FROM {s}.attempts AS a WHERE a.trial_id = u.id)
        )""",
    "charge": """
        UPDATE {s}.trials AS t SET lost_count = t.lost_count + 1,
            status = CASE WHEN t.lost_count + 1 > $1 THEN 'broken' ELSE 'interrupted' END
        FROM unnest($2::text[], $3::integer[]) AS u (id, token)
        WHERE t.id = u.id AND t.token = u.token""",
    "end": "UPDATE {s}.attempts SET outcome = $1 WHERE trial_id = $2 AND number = $3",
    "lock_trial": "SELECT 1 FROM {s}.trials WHERE id = $1 FOR UPDATE",
    "charged": """
        SELECT t.status, t.lost_count, a.outcome, latest.outcome FROM {s}.trials AS t
        JOIN {s}.attempts AS a ON a.trial_id = t.id AND a.number = $2 AND a.worker = $3
        LEFT JOIN {s}.attempts AS latest ON latest.trial_id = t.id AND latest.number = t.token
        WHERE t.id = $1""",
    "clear": "UPDATE {s}.trials SET status = $2, lost_count = $3 WHERE id = $1",
    "get": _TRIALS.format(where="WHERE id = $1"),
    **{
        f"best_{order}": _TRIALS.format(where=_BEST.format(order=order))
        for order in ("asc", "desc")
    },
    "list": _TRIALS.format(where="WHERE status = $1") + " LIMIT $2 OFFSET $3",
    "all": _TRIALS.format(where="") + " LIMIT $1 OFFSET $2",
    "attempts": """
        SELECT trial_id, number, token, worker, host, reserved_at, heartbeat_at, outcome
        FROM {s}.attempts WHERE trial_id = ANY($1::text[]) ORDER BY trial_id, number""",
    "counts": "SELECT status, count(*) FROM {s}.trials GROUP BY status",
    "register_worker": _RECORD_WORKER.format(
        columns=_WORKER_COLUMNS,
        update="""host = $2,
        pid = $3, job_id = $4, task_id = $5, running = $6, state = $7, started_at = now(),
        beat_at = now()""",
    ),
    "beat_worker": _RECORD_WORKER.format(
        columns=_WORKER_COLUMNS, update="running = $6, state = $7, beat_at = now()"
    ),
    "workers": f"""
        SELECT {_WORKER_COLUMNS}, started_at, beat_at FROM {{s}}.workers
        ORDER BY started_at DESC""",
    "counts_of": """
        SELECT status, count(*) FROM {s}.trials WHERE id = ANY($1::text[]) GROUP BY status""",
    "rerun": """
        UPDATE {s}.trials SET status = 'new', lost_count = 0, not_before = NULL
        WHERE id = ANY($1::text[]) AND status = ANY($2::text[])""",
    "record_values": """
        INSERT INTO {s}.trial_values (trial_id, step, value)
        SELECT v.trial_id, v.step, v.value
        FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::bigint[])
            AS v(trial_id, step, value, token)
        WHERE v.token IS NULL OR EXISTS (
            SELECT 1 FROM {s}.trials t
            WHERE t.id = v.trial_id AND t.token = v.token AND t.status = 'reserved' FOR SHARE)
        ON CONFLICT (trial_id, step) DO NOTHING""",
    "values_after": """
        SELECT seq, trial_id, step, value FROM {s}.trial_values WHERE seq > $1
        ORDER BY seq LIMIT $2""",
    "experiment": """
        SELECT name, version, command, config, code_version, created_at, maximize, search
        FROM {s}.experiments
        WHERE name = $1 ORDER BY version DESC LIMIT 1""",
    "add_experiment": """
        INSERT INTO {s}.experiments
            (name, version, command, config, code_version, maximize, search)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING RETURNING 1""",
    "replace_experiment": """
        INSERT INTO {s}.experiments
            (name, version, command, config, code_version, maximize, search)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO UPDATE SET
            command = excluded.command, config = excluded.config,
            code_version = excluded.code_version, maximize = excluded.maximize,
            search = excluded.search RETURNING 1""",
}


def quote(schema: str) -> str:
    """
    The schema's name quoted for SQL text (a name cannot be a parameter).

    Raises:
        ValueError: the name is not a plain lower-case SQL name.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        msg = f"schema must be a lower-case SQL name (letters, digits, _): {schema!r}"
        raise ValueError(msg)
    return f'"{schema}"'


_QUERIES["reclaim_timed"] = f"""
    WITH reclaimed AS ({_QUERIES["reclaim"]})
    SELECT *, NULL::float8 FROM reclaimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL,
        $1 - extract(epoch FROM now() - min(heartbeat_at))::float8
    FROM {{s}}.trials
    WHERE status = 'reserved' AND heartbeat_at > now() - make_interval(secs => $1)
        AND ($2::text = '' OR holder != $2::text) AND NOT holder = ANY($4::text[])"""
"""``reclaim``, and a last row that says in how many seconds the oldest lease it left (its
spared and running holders' aside) is ``$1`` old (``NULL``: none is held): the reclaimer's next
look, without a second statement. The outer select reads the trials as they were before the
update (a statement's one snapshot), so it sees only the leases not reclaimed by it."""


def queries(schema: str) -> dict[str, str]:
    """Every query of the store for one schema (values are always parameters)."""
    quoted = quote(schema)
    picks = {"pick": PICK.format(s=quoted)}
    return {name: text.format(s=quoted, **picks) for name, text in _QUERIES.items()}


def migration(schema: str, number: int) -> str:
    """The statements that take the store in one schema from version ``number`` to the next."""
    return MIGRATIONS[number].format(s=quote(schema))
