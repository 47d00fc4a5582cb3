-- The lab's demo database: a small clinic. Least-privilege group roles that the per-call roles Vault
-- creates join (IN ROLE), and row-level security that shows VIP patients (and their appointments and
-- notes) only to clinic_sensitive. Loaded once into the template cluster by lab/postgres.ts.

CREATE ROLE clinic_reader NOLOGIN;
CREATE ROLE clinic_writer NOLOGIN IN ROLE clinic_reader;
CREATE ROLE clinic_sensitive NOLOGIN IN ROLE clinic_reader;

-- CONNECT stays with PUBLIC (PostgreSQL's default): a role outside the groups can log in and see
-- nothing, since the schema is closed to PUBLIC.
REVOKE ALL ON DATABASE clinic FROM PUBLIC;
GRANT CONNECT ON DATABASE clinic TO PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO clinic_reader;

CREATE TABLE patients (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  mrn         text NOT NULL UNIQUE,
  full_name   text NOT NULL,
  birth_date  date NOT NULL,
  vip         boolean NOT NULL DEFAULT false
);

CREATE TABLE appointments (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  patient_id  integer NOT NULL REFERENCES patients(id),
  starts_at   timestamptz NOT NULL,
  reason      text NOT NULL,
  status      text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'completed', 'cancelled', 'no_show'))
);

CREATE TABLE notes (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  patient_id  integer NOT NULL REFERENCES patients(id),
  body        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT ON patients, appointments, notes TO clinic_reader;
GRANT INSERT, UPDATE, DELETE ON appointments, notes TO clinic_writer;

-- A patient row is visible when it is not VIP, or to members of clinic_sensitive. Appointments and
-- notes follow their patient: the subquery runs under the caller's own policy on patients.
ALTER TABLE patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE appointments ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;

CREATE POLICY patients_visible ON patients FOR SELECT
  USING (NOT vip OR pg_has_role('clinic_sensitive', 'USAGE'));
CREATE POLICY appointments_of_visible_patients ON appointments FOR ALL
  USING (patient_id IN (SELECT id FROM patients))
  WITH CHECK (patient_id IN (SELECT id FROM patients));
CREATE POLICY notes_of_visible_patients ON notes FOR ALL
  USING (patient_id IN (SELECT id FROM patients))
  WITH CHECK (patient_id IN (SELECT id FROM patients));

INSERT INTO patients (mrn, full_name, birth_date, vip) VALUES
  ('MRN-1001', 'Ada Lovelace',        '1985-12-10', false),
  ('MRN-1002', 'Alan Turing',         '1972-06-23', false),
  ('MRN-1003', 'Grace Hopper',        '1966-12-09', false),
  ('MRN-1004', 'Katherine Johnson',   '1958-08-26', false),
  ('MRN-1005', 'Edsger Dijkstra',     '1970-05-11', false),
  ('MRN-1006', 'Barbara Liskov',      '1979-11-07', false),
  ('MRN-1007', 'Donald Knuth',        '1968-01-10', false),
  ('MRN-1008', 'Frances Allen',       '1982-08-04', false),
  ('MRN-1009', 'Margaret Hamilton',   '1976-08-17', false),
  ('MRN-1010', 'Tim Berners-Lee',     '1975-06-08', false),
  ('MRN-1011', 'Valentina Vip',       '1980-03-14', true),
  ('MRN-1012', 'Victor Vip',          '1969-09-30', true);

INSERT INTO appointments (patient_id, starts_at, reason, status) VALUES
  (1,  '2026-12-01 09:00+00', 'Annual check-up',          'scheduled'),
  (2,  '2026-12-01 09:30+00', 'Follow-up: blood pressure', 'scheduled'),
  (3,  '2026-12-01 10:00+00', 'Vaccination',              'scheduled'),
  (4,  '2026-11-20 11:00+00', 'Physiotherapy',            'completed'),
  (5,  '2026-11-18 14:00+00', 'Dermatology consult',      'no_show'),
  (6,  '2026-12-02 08:30+00', 'Lab results review',       'scheduled'),
  (7,  '2026-12-02 13:00+00', 'Allergy test',             'scheduled'),
  (8,  '2026-11-25 15:30+00', 'Post-op review',           'cancelled'),
  (9,  '2026-12-03 10:15+00', 'Cardiology referral',      'scheduled'),
  (10, '2026-12-03 16:00+00', 'Sports injury',            'scheduled'),
  (11, '2026-12-04 09:00+00', 'Private consultation',     'scheduled'),
  (12, '2026-12-04 11:00+00', 'Executive health screen',  'scheduled');

INSERT INTO notes (patient_id, body, created_at) VALUES
  (1,  'Non-smoker. Exercises three times a week.',             '2026-10-01 09:10+00'),
  (2,  'BP 142/91. Recheck in four weeks.',                     '2026-11-01 09:40+00'),
  (3,  'Flu vaccine due.',                                      '2026-11-05 10:05+00'),
  (4,  'Knee mobility improving.',                              '2026-11-20 11:45+00'),
  (6,  'Requested copy of lab results.',                        '2026-11-10 08:50+00'),
  (9,  'Family history of arrhythmia.',                         '2026-11-12 10:30+00'),
  (11, 'VIP: confidential treatment plan on file.',             '2026-11-15 09:20+00'),
  (12, 'VIP: do not disclose appointment times to anyone.',     '2026-11-16 11:20+00');
