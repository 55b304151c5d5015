"""Study files: reading, validating and resolving them into a typed ``StudySpec`` and its search space."""
