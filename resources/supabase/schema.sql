-- FaceBatch schema for PostgreSQL >= 14 and Supabase. Plain SQL, idempotent: run it again after an
-- upgrade. `facebatch db init --store postgres --dsn ...` applies it; so can psql or the Supabase
-- SQL editor.
--
-- The users table: most projects already have one. Its name and id column are read from the
-- settings `facebatch.users_table` / `facebatch.users_id_column` (defaults `users` / `id`), e.g.
--   SET facebatch.users_table = 'profiles';  -- before running this file (db init does it)
-- A missing users table is created with a text id. Faces are keyed by the user's id as text, with
-- no foreign key, so that any users table (text or uuid ids) works.
--
-- Access: row level security is on and no policy is granted, so the anon and authenticated roles
-- see nothing; FaceBatch uses the service-role key (Supabase) or the owner's login (Postgres).
--
-- Embeddings are stored as bytea: float32 big-endian (`float4send` of each element), so that a
-- gallery of 100,000 faces reads as one contiguous copy; the SQL functions take them as `real[]`.
-- Where the `vector` extension can be installed (Supabase has pgvector), the optional part at the
-- end adds a `vector` column (written by facebatch_commit_registration), an HNSW index for 512-d
-- faces, and `match_faces(query, threshold, count)`.

CREATE TABLE IF NOT EXISTS facebatch_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

DO $$
DECLARE
    tbl text := coalesce(nullif(current_setting('facebatch.users_table', true), ''), 'users');
    col text := coalesce(nullif(current_setting('facebatch.users_id_column', true), ''), 'id');
BEGIN
    IF to_regclass(tbl) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %s (%I text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())',
            tbl, col);
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    END IF;
    INSERT INTO facebatch_meta VALUES ('users_table', tbl), ('users_id_column', col)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END
$$;

CREATE TABLE IF NOT EXISTS faces (
    user_id         text PRIMARY KEY,
    embedding       bytea NOT NULL,
    embedding_dim   integer NOT NULL,
    pack_space      text NOT NULL,
    pack_name       text NOT NULL,
    pack            jsonb NOT NULL,
    bbox            jsonb NOT NULL,
    det_score       real NOT NULL,
    quality         jsonb NOT NULL,
    thumbnail       bytea,
    thumbnail_path  text,
    source_url      text,
    task_id         text,
    enrolled_by     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS faces_pack_space ON faces (pack_space);
-- Keep embeddings (2 KB at 512-d) in the row, uncompressed: reading the gallery skips TOAST.
ALTER TABLE faces SET (toast_tuple_target = 8160);
ALTER TABLE faces ALTER COLUMN embedding SET STORAGE EXTERNAL;

CREATE TABLE IF NOT EXISTS tasks (
    task_id        text PRIMARY KEY,
    seq            bigserial,
    operation      text NOT NULL,
    status         text NOT NULL,
    total_items    integer NOT NULL,
    error_message  text,
    options        jsonb NOT NULL DEFAULT '{}',
    owner          text,
    heartbeat_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at DESC, seq DESC);
CREATE INDEX IF NOT EXISTS tasks_processing ON tasks (status) WHERE status = 'processing';

CREATE TABLE IF NOT EXISTS task_items (
    task_id           text NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    idx               integer NOT NULL,
    user_id           text NOT NULL,
    avatar_image_url  text NOT NULL DEFAULT '',
    line              integer,
    state             text NOT NULL DEFAULT 'pending',
    result            jsonb,
    finished_at       timestamptz,
    PRIMARY KEY (task_id, idx)
);
CREATE INDEX IF NOT EXISTS task_items_state ON task_items (task_id, state);

ALTER TABLE faces ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE facebatch_meta ENABLE ROW LEVEL SECURITY;

-- ISO-8601 in UTC with milliseconds, the same text the SQLite store writes.
CREATE OR REPLACE FUNCTION facebatch_iso(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"')
$$;

CREATE OR REPLACE FUNCTION facebatch_item_state(result jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN (result ->> 'status')::boolean THEN 'succeeded'
        WHEN result ->> 'error_code' = 'cancelled' THEN 'cancelled'
        ELSE 'failed' END
$$;

-- One item's outcome, written in the caller's transaction (no-op without a task).
CREATE OR REPLACE FUNCTION facebatch_record_item(p_task_id text, p_idx integer, p_result jsonb)
RETURNS void
LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    IF p_task_id IS NULL THEN
        RETURN;
    END IF;
    UPDATE task_items SET state = facebatch_item_state(p_result), result = p_result,
        finished_at = (p_result ->> 'finished_at')::timestamptz
        WHERE task_id = p_task_id AND idx = p_idx;
    UPDATE tasks SET updated_at = now() WHERE task_id = p_task_id;
END
$$;

-- real[] -> bytea (float32 big-endian), and back (normal numbers; zero for zero/denormals).
CREATE OR REPLACE FUNCTION facebatch_float4_bytes(v real[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(string_agg(float4send(x), ''::bytea ORDER BY o), ''::bytea)
    FROM unnest(v) WITH ORDINALITY AS u(x, o)
$$;

CREATE OR REPLACE FUNCTION facebatch_float4_array(b bytea) RETURNS real[]
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(array_agg(CASE WHEN e = 0 THEN 0 ELSE
        (CASE WHEN s = 1 THEN -1 ELSE 1 END) * (1 + m / 8388608.0) * 2 ^ (e - 127) END::real
        ORDER BY i), '{}')
    FROM (SELECT i, get_byte(b, 4 * i) >> 7 AS s,
                 ((get_byte(b, 4 * i) & 127) << 1) | (get_byte(b, 4 * i + 1) >> 7) AS e,
                 ((get_byte(b, 4 * i + 1) & 127) << 16) | (get_byte(b, 4 * i + 2) << 8)
                     | get_byte(b, 4 * i + 3) AS m
          FROM generate_series(0, length(b) / 4 - 1) AS i) AS parts
$$;

-- One user's registration: the user, the face and the item's outcome in one transaction (an RPC
-- call is one transaction in PostgREST too). `p_results` holds the outcome for each case, keyed
-- ok / user_not_found / face_already_registered; `{enrolled}` in the last one's message becomes
-- the existing face's enrollment time. Two callers racing on one user: the unique key decides,
-- the loser gets face_already_registered (or, with replace, overwrites).
CREATE OR REPLACE FUNCTION facebatch_commit_registration(
    p_task_id text, p_idx integer, p_user_id text, p_embedding real[], p_pack_space text,
    p_pack jsonb, p_bbox jsonb, p_det_score real, p_quality jsonb, p_thumbnail bytea,
    p_thumbnail_path text, p_source_url text, p_enrolled_by text, p_results jsonb,
    p_replace boolean, p_create_user boolean
) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public AS $$
DECLARE
    tbl text := (SELECT value FROM facebatch_meta WHERE key = 'users_table');
    col text := (SELECT value FROM facebatch_meta WHERE key = 'users_id_column');
    known boolean;
    col_type text;
    written boolean;
    was_update boolean;
    enrolled timestamptz;
    v_result jsonb;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I::text = $1)', tbl, col)
        INTO known USING p_user_id;
    IF NOT known AND NOT p_create_user THEN
        v_result := p_results -> 'user_not_found';
    ELSE
        IF NOT known THEN
            SELECT format_type(atttypid, atttypmod) INTO col_type FROM pg_attribute
                WHERE attrelid = tbl::regclass AND attname = col;
            EXECUTE format('INSERT INTO %s (%I) VALUES ($1::%s) ON CONFLICT DO NOTHING',
                           tbl, col, col_type) USING p_user_id;
        END IF;
        IF p_replace THEN
            INSERT INTO faces AS f (user_id, embedding, embedding_dim, pack_space, pack_name,
                pack, bbox, det_score, quality, thumbnail, thumbnail_path, source_url, task_id,
                enrolled_by)
            VALUES (p_user_id, facebatch_float4_bytes(p_embedding), cardinality(p_embedding),
                p_pack_space,
                p_pack ->> 'name', p_pack, p_bbox, p_det_score, p_quality, p_thumbnail,
                p_thumbnail_path, p_source_url, p_task_id, p_enrolled_by)
            ON CONFLICT (user_id) DO UPDATE SET embedding = excluded.embedding,
                embedding_dim = excluded.embedding_dim, pack_space = excluded.pack_space,
                pack_name = excluded.pack_name, pack = excluded.pack, bbox = excluded.bbox,
                det_score = excluded.det_score, quality = excluded.quality,
                thumbnail = excluded.thumbnail, thumbnail_path = excluded.thumbnail_path,
                source_url = excluded.source_url, task_id = excluded.task_id,
                enrolled_by = excluded.enrolled_by, updated_at = now()
            RETURNING (f.xmax <> 0) INTO was_update;
            v_result := (p_results -> 'ok') || jsonb_build_object('replaced', was_update);
        ELSE
            INSERT INTO faces (user_id, embedding, embedding_dim, pack_space, pack_name, pack,
                bbox, det_score, quality, thumbnail, thumbnail_path, source_url, task_id,
                enrolled_by)
            VALUES (p_user_id, facebatch_float4_bytes(p_embedding), cardinality(p_embedding),
                p_pack_space,
                p_pack ->> 'name', p_pack, p_bbox, p_det_score, p_quality, p_thumbnail,
                p_thumbnail_path, p_source_url, p_task_id, p_enrolled_by)
            ON CONFLICT (user_id) DO NOTHING
            RETURNING true INTO written;
            IF written THEN
                v_result := (p_results -> 'ok') || jsonb_build_object('replaced', false);
            ELSE
                SELECT created_at INTO enrolled FROM faces WHERE user_id = p_user_id;
                v_result := p_results -> 'face_already_registered';
                v_result := jsonb_set(v_result, '{error_message}', to_jsonb(replace(
                    v_result ->> 'error_message', '{enrolled}', facebatch_iso(enrolled))));
            END IF;
        END IF;
    END IF;
    IF (v_result ->> 'status')::boolean AND EXISTS (SELECT 1 FROM pg_attribute
            WHERE attrelid = 'faces'::regclass AND attname = 'embedding_vec') THEN
        EXECUTE 'UPDATE faces SET embedding_vec = $1::vector WHERE user_id = $2'
            USING p_embedding, p_user_id;
    END IF;
    PERFORM facebatch_record_item(p_task_id, p_idx, v_result);
    RETURN v_result;
END
$$;

-- One user's face deletion and its outcome, keyed ok / no_face_registered / user_not_found.
CREATE OR REPLACE FUNCTION facebatch_commit_deletion(
    p_task_id text, p_idx integer, p_user_id text, p_results jsonb
) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public AS $$
DECLARE
    tbl text := (SELECT value FROM facebatch_meta WHERE key = 'users_table');
    col text := (SELECT value FROM facebatch_meta WHERE key = 'users_id_column');
    known boolean;
    v_result jsonb;
BEGIN
    DELETE FROM faces WHERE user_id = p_user_id;
    IF FOUND THEN
        v_result := p_results -> 'ok';
    ELSE
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I::text = $1)', tbl, col)
            INTO known USING p_user_id;
        v_result := p_results -> CASE WHEN known THEN 'no_face_registered' ELSE 'user_not_found' END;
    END IF;
    PERFORM facebatch_record_item(p_task_id, p_idx, v_result);
    RETURN v_result;
END
$$;

-- Many outcomes of one task in one transaction: [{"idx": 3, "result": {...}}, ...].
CREATE OR REPLACE FUNCTION facebatch_record_results(p_task_id text, p_items jsonb)
RETURNS integer
LANGUAGE plpgsql SET search_path = public AS $$
DECLARE
    n integer;
BEGIN
    UPDATE task_items t SET state = facebatch_item_state(i.result), result = i.result,
        finished_at = (i.result ->> 'finished_at')::timestamptz
    FROM jsonb_to_recordset(p_items) AS i(idx integer, result jsonb)
    WHERE t.task_id = p_task_id AND t.idx = i.idx;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE tasks SET updated_at = now() WHERE task_id = p_task_id;
    RETURN n;
END
$$;

-- Task summaries (one task, or the newest `p_limit`), with counts and ISO timestamps.
CREATE OR REPLACE FUNCTION facebatch_tasks(p_task_id text DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (task_id text, operation text, status text, total_items integer,
               completed_items integer, failed_items integer, error_message text,
               created_at text, updated_at text, owner text)
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT t.task_id, t.operation, t.status, t.total_items,
        (SELECT count(*) FROM task_items i
            WHERE i.task_id = t.task_id AND i.state <> 'pending')::integer,
        (SELECT count(*) FROM task_items i
            WHERE i.task_id = t.task_id AND i.state IN ('failed', 'cancelled'))::integer,
        t.error_message, facebatch_iso(t.created_at), facebatch_iso(t.updated_at), t.owner
    FROM tasks t
    WHERE p_task_id IS NULL OR t.task_id = p_task_id
    ORDER BY t.created_at DESC, t.seq DESC
    LIMIT p_limit
$$;

CREATE OR REPLACE FUNCTION facebatch_set_task_status(
    p_task_id text, p_status text, p_error_message text, p_final boolean
) RETURNS void
LANGUAGE sql SET search_path = public AS $$
    UPDATE tasks SET status = p_status, error_message = p_error_message, updated_at = now(),
        owner = CASE WHEN p_final THEN NULL ELSE owner END
    WHERE task_id = p_task_id
$$;

-- Take a task over: reopen its cancelled items, mark it processing, owned by `p_owner`. Refused
-- (false) while another owner runs it: two instances never run one task at once; a dead owner's
-- task is first marked interrupted (facebatch_mark_interrupted), then any instance may claim it.
DROP FUNCTION IF EXISTS facebatch_claim_task(text, text);
CREATE FUNCTION facebatch_claim_task(p_task_id text, p_owner text) RETURNS boolean
LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    UPDATE tasks SET status = 'processing', error_message = NULL, owner = p_owner,
        heartbeat_at = now(), updated_at = now()
    WHERE task_id = p_task_id
      AND (status <> 'processing' OR owner IS NULL OR owner = p_owner);
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE task_items SET state = 'pending', result = NULL, finished_at = NULL
        WHERE task_id = p_task_id AND state = 'cancelled';
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION facebatch_heartbeat(p_task_id text) RETURNS void
LANGUAGE sql SET search_path = public AS $$
    UPDATE tasks SET heartbeat_at = now() WHERE task_id = p_task_id
$$;

-- Processing tasks with their owner and heartbeat age by the database's clock.
CREATE OR REPLACE FUNCTION facebatch_processing_tasks()
RETURNS TABLE (task_id text, owner text, heartbeat_age_s double precision)
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT task_id, owner, extract(epoch FROM now() - heartbeat_at)::double precision
    FROM tasks WHERE status = 'processing'
$$;

-- Mark a processing task interrupted, unless someone claimed it since (owner changed).
CREATE OR REPLACE FUNCTION facebatch_mark_interrupted(
    p_task_id text, p_owner text, p_message text
) RETURNS boolean
LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    UPDATE tasks SET status = 'interrupted', error_message = p_message, owner = NULL,
        updated_at = now()
    WHERE task_id = p_task_id AND status = 'processing' AND owner IS NOT DISTINCT FROM p_owner;
    RETURN FOUND;
END
$$;

-- Faces per pack outside `p_space`: the duplicate check refuses to mix packs.
CREATE OR REPLACE FUNCTION facebatch_other_spaces(p_space text)
RETURNS TABLE (pack_name text, faces integer)
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT pack_name, count(*)::integer FROM faces WHERE pack_space <> p_space GROUP BY pack_name
$$;

-- Which of these ids the users table holds, compared as text (so uuid ids work too).
-- (An array, not a one-column table: PostgREST answers it as a plain JSON array.)
DROP FUNCTION IF EXISTS facebatch_existing_users(text[]);
CREATE FUNCTION facebatch_existing_users(p_user_ids text[]) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = public AS $$
DECLARE
    tbl text := (SELECT value FROM facebatch_meta WHERE key = 'users_table');
    col text := (SELECT value FROM facebatch_meta WHERE key = 'users_id_column');
    found text[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(%I::text), ''{}'') FROM %s WHERE %I::text = ANY($1)',
                   col, tbl, col)
        INTO found USING p_user_ids;
    RETURN found;
END
$$;

CREATE OR REPLACE FUNCTION facebatch_space_counts()
RETURNS TABLE (pack_space text, pack_name text, faces integer)
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT pack_space, pack_name, count(*)::integer FROM faces GROUP BY pack_space, pack_name
$$;

-- Only the service role (Supabase) or the owner may call these.
DO $$
DECLARE
    fn text;
    r text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'facebatch_commit_registration(text, integer, text, real[], text, jsonb, jsonb, real, '
            'jsonb, bytea, text, text, text, jsonb, boolean, boolean)',
        'facebatch_commit_deletion(text, integer, text, jsonb)',
        'facebatch_record_item(text, integer, jsonb)',
        'facebatch_record_results(text, jsonb)',
        'facebatch_tasks(text, integer)',
        'facebatch_set_task_status(text, text, text, boolean)',
        'facebatch_claim_task(text, text)',
        'facebatch_heartbeat(text)',
        'facebatch_processing_tasks()',
        'facebatch_mark_interrupted(text, text, text)',
        'facebatch_other_spaces(text)',
        'facebatch_space_counts()',
        'facebatch_existing_users(text[])'
    ] LOOP
        EXECUTE 'REVOKE ALL ON FUNCTION ' || fn || ' FROM PUBLIC';
        FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %I', fn, r);
            END IF;
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        END IF;
    END LOOP;
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON faces, tasks, task_items, facebatch_meta FROM %I', r);
        END IF;
    END LOOP;
END
$$;

-- Optional: pgvector. Off unless asked for (`SET facebatch.with_vector = 'on'` before running
-- this file, or `facebatch db init --with-vector`): this part has not been run against a server
-- with pgvector yet, and FaceBatch's duplicate check does not need it. Skipped, with a notice,
-- where the extension is not available.
DO $$
BEGIN
    IF coalesce(current_setting('facebatch.with_vector', true), '') <> 'on' THEN
        RAISE NOTICE 'facebatch: pgvector part not requested (facebatch.with_vector)';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        RAISE NOTICE 'facebatch: the vector extension is not available; match_faces not created';
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS vector;
    ALTER TABLE faces ADD COLUMN IF NOT EXISTS embedding_vec vector;
    DROP TRIGGER IF EXISTS faces_vec ON faces;
    UPDATE faces SET embedding_vec = facebatch_float4_array(embedding)::vector
        WHERE embedding_vec IS NULL;
    CREATE INDEX IF NOT EXISTS faces_vec_512 ON faces
        USING hnsw ((embedding_vec::vector(512)) vector_ip_ops) WHERE embedding_dim = 512;
    -- Faces of `p_space` whose cosine similarity (embeddings are unit length) to `query` is at
    -- least `threshold`, best first.
    CREATE OR REPLACE FUNCTION match_faces(
        query vector, threshold double precision, count integer, p_space text DEFAULT NULL
    ) RETURNS TABLE (user_id text, similarity double precision)
    LANGUAGE plpgsql STABLE AS $f$
    BEGIN
        IF vector_dims(query) = 512 THEN
            RETURN QUERY SELECT s.user_id, s.similarity FROM (
                SELECT f.user_id,
                    -(f.embedding_vec::vector(512) <#> query::vector(512))::double precision
                    AS similarity
                FROM faces f
                WHERE f.embedding_dim = 512 AND (p_space IS NULL OR f.pack_space = p_space)
                ORDER BY f.embedding_vec::vector(512) <#> query::vector(512)
                LIMIT count) s WHERE s.similarity >= threshold;
        ELSE
            RETURN QUERY SELECT s.user_id, s.similarity FROM (
                SELECT f.user_id, -(f.embedding_vec <#> query)::double precision AS similarity
                FROM faces f
                WHERE f.embedding_dim = vector_dims(query)
                  AND (p_space IS NULL OR f.pack_space = p_space)
                ORDER BY f.embedding_vec <#> query
                LIMIT count) s WHERE s.similarity >= threshold;
        END IF;
    END
    $f$;
    REVOKE ALL ON FUNCTION match_faces(vector, double precision, integer, text) FROM PUBLIC;
END
$$;
