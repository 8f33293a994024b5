"""(placeholder: filled in by its owner)"""

from flask import Blueprint

bp = Blueprint("admin", __name__)
