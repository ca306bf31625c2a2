-- The alerts API object list (GET /objects): each object with its probabilities from one classifier,
-- or one row of NULLs where it has none. dbp filters, sorts and pages the output columns:
--   db.query("object_list", {"classifier": "lc_classifier", "ranking": 1}).paginate(
--       {"class_name": "SN", "probability": {"$gte": 0.5}, "ndet": {"$gte": 2}}, sort=[("probability", -1)])
-- classifier: the classifier's name; ranking: 1 for each object's top class, or null for every class.
-- key: oid, classifier_version, class_name
-- not null: oid
SELECT o.oid, o.ndet, o.firstmjd, o.lastmjd, o.meanra, o.meandec, o.sigmara, o.sigmadec, o.corrected, o.stellar,
       p.classifier_name, p.classifier_version, p.class_name, p.probability, p.ranking
FROM object AS o
LEFT JOIN probability AS p
       ON p.oid = o.oid
      AND p.classifier_name = %(classifier)s
      AND (p.ranking = %(ranking)s::integer OR %(ranking)s::integer IS NULL)
