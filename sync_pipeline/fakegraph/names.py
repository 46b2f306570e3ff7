"""What generated tenants are made of: first and last names, departments and their job
titles, offices, external domains, group words and topics, service plans and SKUs; and the
small draws from a tenant's random stream (ids, timestamps) with the text helpers."""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid

_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily "
    "Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy "
    "Jacob Kathleen Gary Angela Nicholas Shirley Eric Brenda Jonathan Emma Stephen Anna "
    "Larry Pamela Justin Nicole Scott Samantha Brandon Katherine Benjamin Christine Samuel "
    "Helen Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack "
    "Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce Jose Victoria Adam Ruth "
    "Nathan Virginia Henry Lauren Zachary Kelly Douglas Christina Peter Joan Kyle Evelyn "
    "Noah Judith Ethan Andrea Jeremy Hannah Walter Megan Christian Cheryl Keith Jacqueline "
    "Roger Martha Terry Madison Austin Teresa Sean Gloria Gerald Sara Carl Janice Harold "
    "Ann Dylan Kathryn Arthur Abigail Lawrence Sophia Jordan Frances Jesse Jean Bryan Alice "
    "Billy Judy Bruce Isabella Gabriel Julia Joe Grace Logan Amber Alan Denise Juan Danielle "
    "Wayne Marilyn Roy Beverly Ralph Charlotte Randy Natalie Eugene Theresa Vincent Diana "
    "Russell Brittany Louis Doris Philip Kayla Bobby Alexis Johnny Lori Bradley Marie "
    "Aisha Chen Wei Yuki Priya Arjun Fatima Omar Sofia Mateo Lucia Hiro Ingrid Lars Zoe "
    "Noor Kofi Amara Dmitri Olga Sven Freya Rafael Camila Tariq Leila Kenji Mei Ravi Ananya"
).split()

_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed "
    "Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales "
    "Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds "
    "Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar "
    "Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington "
    "Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson "
    "Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes "
    "Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant "
    "Okafor Nakamura Tanaka Singh Kumar Haddad Johansson Lindqvist Novak Kowalski Rossi "
    "Bianchi Muller Schneider Dubois Moreau Costa Santos Yilmaz Ivanova Petrov Osei Mensah"
).split()

_DEPARTMENTS = {
    "Engineering": (
        "Software Engineer",
        "Senior Software Engineer",
        "Engineering Manager",
        "Site Reliability Engineer",
        "QA Engineer",
        "Principal Engineer",
    ),
    "Sales": (
        "Account Executive",
        "Sales Development Rep",
        "Sales Manager",
        "Regional Sales Director",
    ),
    "Marketing": (
        "Marketing Specialist",
        "Content Strategist",
        "Marketing Manager",
        "Brand Designer",
    ),
    "Finance": ("Accountant", "Financial Analyst", "Finance Manager", "Controller"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Business Partner", "HR Manager"),
    "IT": ("IT Support Specialist", "Systems Administrator", "IT Manager", "Security Analyst"),
    "Operations": ("Operations Analyst", "Operations Manager", "Facilities Coordinator"),
    "Customer Success": ("Customer Success Manager", "Support Engineer", "Support Lead"),
    "Legal": ("Legal Counsel", "Paralegal", "Compliance Officer"),
    "Product": ("Product Manager", "Product Designer", "UX Researcher"),
}
_DEPT_NAMES = tuple(_DEPARTMENTS)
_DEPT_WEIGHTS = (22, 16, 8, 7, 5, 7, 8, 10, 3, 6)
_OFFICES = (
    "London",
    "Seattle",
    "New York",
    "Berlin",
    "Singapore",
    "Sydney",
    "Remote",
    "Paris",
    "Toronto",
    "Dublin",
)
_EXTERNAL_DOMAINS = (
    "fabrikam.com",
    "northwindtraders.com",
    "adatum.com",
    "gmail.com",
    "outlook.com",
    "litware.com",
    "tailspintoys.com",
    "wingtiptoys.com",
)
_GROUP_WORDS = (
    "Project",
    "Team",
    "Committee",
    "Guild",
    "Working Group",
    "Squad",
    "Council",
    "Club",
    "Network",
    "Taskforce",
)
_GROUP_TOPICS = (
    "Apollo",
    "Falcon",
    "Orion",
    "Phoenix",
    "Atlas",
    "Nova",
    "Zephyr",
    "Titan",
    "Aurora",
    "Helix",
    "Quasar",
    "Summit",
    "Harbor",
    "Cascade",
    "Meridian",
    "Pioneer",
    "Horizon",
    "Catalyst",
    "Beacon",
    "Vertex",
    "Wellbeing",
    "Diversity",
    "Sustainability",
    "Innovation",
    "Onboarding",
    "Security Champions",
    "Agile",
    "Data",
    "Cloud",
    "Mobile",
    "Analytics",
    "Partnerships",
    "Events",
    "Social",
)

# Service plans (real ids) and the three SKUs the generated tenants subscribe to.
_PLANS = {
    "EXCHANGE_S_ENTERPRISE": "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "EXCHANGE_S_STANDARD": "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "SHAREPOINTENTERPRISE": "5dbe027f-2339-4123-9542-606e4d348a72",
    "TEAMS1": "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "OFFICESUBSCRIPTION": "43de0ff5-c92c-492b-9116-175376d08c38",
    "MCOSTANDARD": "0feaeb32-d00e-4d66-bd5a-43b5b83db82c",
    "YAMMER_ENTERPRISE": "7547a3fe-08ee-4ccb-b430-5077c5041653",
}
SKUS = (
    (
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        "ENTERPRISEPACK",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "OFFICESUBSCRIPTION",
            "MCOSTANDARD",
            "YAMMER_ENTERPRISE",
        ),
    ),
    (
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        "SPE_E5",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "OFFICESUBSCRIPTION",
            "MCOSTANDARD",
        ),
    ),
    ("4b9405b0-7788-4568-add1-99614e613b69", "EXCHANGESTANDARD", ("EXCHANGE_S_STANDARD",)),
)

_EPOCH = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
_SPAN_SECONDS = int((dt.datetime(2025, 6, 1, tzinfo=dt.UTC) - _EPOCH).total_seconds())


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(rng: random.Random) -> str:
    moment = _EPOCH + dt.timedelta(seconds=rng.randrange(_SPAN_SECONDS))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower()) or "tenant"


def _ascii(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", text)
