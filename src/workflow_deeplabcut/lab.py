"""Schema ``lab``: labs, people, projects, protocols, sources and devices (cameras)."""

import datajoint as dj

schema = dj.Schema()


@schema
class Organization(dj.Manual):
    definition = """
    organization: varchar(24)
    ---
    org_name: varchar(255)
    org_address="": varchar(512)
    org_comment="": varchar(1024)
    """


@schema
class Lab(dj.Lookup):
    definition = """
    lab: varchar(24)  # abbreviated lab name
    ---
    lab_name: varchar(255)
    address="": varchar(255)
    time_zone="UTC": varchar(64)  # IANA name, e.g. Europe/London
    -> [nullable] Organization
    """


@schema
class Location(dj.Lookup):
    definition = """
    # a room or rig where sessions take place
    -> Lab
    location: varchar(32)
    ---
    location_description="": varchar(255)
    """


@schema
class UserRole(dj.Lookup):
    definition = """
    user_role: varchar(24)
    """


@schema
class User(dj.Lookup):
    definition = """
    user: varchar(32)
    ---
    user_email="": varchar(128)
    user_cellphone="": varchar(32)
    user_fullname="": varchar(64)
    """


@schema
class LabMembership(dj.Lookup):
    definition = """
    -> Lab
    -> User
    ---
    -> [nullable] UserRole
    """


@schema
class ProtocolType(dj.Lookup):
    definition = """
    protocol_type: varchar(32)
    """


@schema
class Protocol(dj.Lookup):
    definition = """
    # an approved animal-use or experimental protocol
    protocol: varchar(36)
    ---
    -> ProtocolType
    protocol_description="": varchar(255)
    """


@schema
class Project(dj.Lookup):
    definition = """
    project: varchar(32)
    ---
    project_description="": varchar(1024)
    """


@schema
class ProjectUser(dj.Manual):
    definition = """
    -> Project
    -> User
    """


@schema
class Source(dj.Lookup):
    definition = """
    # where animals come from (vendor, colony)
    source: varchar(32)
    ---
    source_name: varchar(255)
    contact_details="": varchar(255)
    source_description="": varchar(255)
    """


@schema
class Device(dj.Lookup):
    definition = """
    # a recording device, e.g. a camera
    device: varchar(32)
    ---
    modality: varchar(64)
    description="": varchar(256)
    """
