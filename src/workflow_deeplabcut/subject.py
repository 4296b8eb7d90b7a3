"""Schema ``subject``: animals, their species, strain, line, lab and fate."""

import datajoint as dj

from . import lab  # noqa: F401  (resolves '-> lab.X' in definitions)

schema = dj.Schema()


@schema
class Species(dj.Lookup):
    definition = """
    species: varchar(64)  # e.g. Mus musculus
    """


@schema
class Strain(dj.Lookup):
    definition = """
    strain: varchar(32)
    ---
    strain_standard_name="": varchar(64)
    strain_desc="": varchar(255)
    """


@schema
class Line(dj.Lookup):
    definition = """
    line: varchar(32)
    ---
    line_description="": varchar(2000)
    target_phenotype="": varchar(255)
    is_active=1: bool
    """


@schema
class Subject(dj.Manual):
    definition = """
    # an experimental animal
    subject: varchar(32)
    ---
    subject_nickname="": varchar(64)
    sex: enum('M', 'F', 'U')
    subject_birth_date: date
    subject_description="": varchar(1024)
    """

    class Species(dj.Part):
        definition = """
        -> master
        ---
        -> Species
        """

    class Strain(dj.Part):
        definition = """
        -> master
        ---
        -> Strain
        """

    class Line(dj.Part):
        definition = """
        -> master
        ---
        -> Line
        """

    class Lab(dj.Part):
        definition = """
        -> master
        -> lab.Lab
        ---
        subject_alias="": varchar(32)  # the lab's own name for the animal
        """

    class User(dj.Part):
        definition = """
        -> master
        -> lab.User
        """

    class Source(dj.Part):
        definition = """
        -> master
        ---
        -> lab.Source
        """

    class Protocol(dj.Part):
        definition = """
        -> master
        -> lab.Protocol
        """


@schema
class SubjectDeath(dj.Manual):
    definition = """
    -> Subject
    ---
    death_date: date
    cause="": varchar(255)
    """
