"""Plan rows as a business object: `plans.service` is the one door through which every change to
a row passes (the API, the table's forms, the CSV import, PandaDoc intake)."""
