"""Human review: the board of items waiting for a person (:mod:`.board`), the signed-in page that decides them
(:mod:`.page`, reviewers in :mod:`.accounts`), the follower that feeds the board from the review, tagged and
feedback topics (:mod:`.follower`), and the labelled store decisions are kept in (:mod:`.labels`)."""
