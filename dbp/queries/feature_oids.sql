-- The features step: the distinct objects that have features of one version.
-- key: oid
-- not null: oid
SELECT DISTINCT oid FROM feature WHERE version = %(version)s
