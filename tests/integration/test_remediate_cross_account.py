"""``connector remediate`` of a peering deleted by its accepter in another account and Region.

Two accounts on the moto server: this process's (123456789012, us-east-1, the requester) and a
member account (111111111111, eu-west-1, the accepter) reached as the service reaches it, through
the role of ``securityhub.assume_role_arn_template`` (moto gives an assumed role's credentials
that role's account). The accepter deletes the peering; the record is the accepter's. The plan
requests the new peering in the requester's account and Region, accepts it and repoints the
accepter's route in the accepter's: each step says where it runs, and the peering is back.

The shipped DeleteVpcPeeringConnection mapping runs its CreateVpcPeeringConnection step in the
requester's account and Region (``account``/``region`` on the step), the others in the event's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.cli import main
from tests.support.moto import REGION, MotoServer
from tests.support.records import make_record

pytestmark = pytest.mark.moto

OWN, MEMBER, MEMBER_REGION = "123456789012", "111111111111", "eu-west-1"
ROLE = "arn:{partition}:iam::{account}:role/SecurityHubFindingsImporter"


def member_ec2() -> Any:
    creds = boto3.client("sts").assume_role(RoleArn=ROLE.format(partition="aws", account=MEMBER),
                                            RoleSessionName="accepter")["Credentials"]
    return boto3.client("ec2", region_name=MEMBER_REGION, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def test_a_peering_deleted_by_the_accepter_in_another_account_and_region_is_restored(
        aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    own, member = boto3.client("ec2", region_name=REGION), member_ec2()
    requester_vpc = own.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    accepter_vpc = member.create_vpc(CidrBlock="10.21.0.0/16")["Vpc"]["VpcId"]
    assert member.describe_vpcs(VpcIds=[accepter_vpc])["Vpcs"][0]["OwnerId"] == MEMBER
    subnet = member.create_subnet(VpcId=accepter_vpc, CidrBlock="10.21.1.0/24")["Subnet"]["SubnetId"]
    table = member.create_route_table(VpcId=accepter_vpc)["RouteTable"]["RouteTableId"]
    member.associate_route_table(RouteTableId=table, SubnetId=subnet)
    pcx = own.create_vpc_peering_connection(VpcId=requester_vpc, PeerVpcId=accepter_vpc, PeerOwnerId=MEMBER,
                                            PeerRegion=MEMBER_REGION)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    member.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    member.create_route(RouteTableId=table, DestinationCidrBlock="10.20.0.0/16", VpcPeeringConnectionId=pcx)
    member.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)  # by the accepter
    record = make_record("DeleteVpcPeeringConnection", requestParameters={"vpcPeeringConnectionId": pcx},
                         recipientAccountId=MEMBER, awsRegion=MEMBER_REGION)
    record["userIdentity"] = {**record["userIdentity"], "accountId": MEMBER,
                              "arn": f"arn:aws:iam::{MEMBER}:user/network-admin"}
    event = tmp_path / "event.json"
    event.write_text(json.dumps(record))
    monkeypatch.setenv("CONNECTOR_SECURITYHUB_ASSUME_ROLE_ARN_TEMPLATE", ROLE)

    assert main(["remediate", str(event), "--apply", "--yes"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    plan = out.split("Plan:")[1].split("Dry run:")[0]
    assert f"CreateVpcPeeringConnection in account {OWN} Region {REGION}:" in plan, out
    assert f"AcceptVpcPeeringConnection in account {MEMBER} Region {MEMBER_REGION}:" in plan, out
    assert f"ReplaceRoute in account {MEMBER} Region {MEMBER_REGION}:" in plan, out
    # Every call names where it runs. (moto ignores DryRun for these three operations: the dry
    # run already made them, says so, and the apply does not repeat them.)
    calls = out.split("Dry run:")[1]
    assert f"CreateVpcPeeringConnection in {OWN} {REGION} " in calls
    assert f"AcceptVpcPeeringConnection in {MEMBER} {MEMBER_REGION} " in calls
    assert f"ReplaceRoute in {MEMBER} {MEMBER_REGION} " in calls
    # The requester has a new active peering to the accepter's VPC; the accepter's route uses it.
    peerings = own.describe_vpc_peering_connections(Filters=[
        {"Name": "requester-vpc-info.vpc-id", "Values": [requester_vpc]}])["VpcPeeringConnections"]
    # (moto may ignore the filter: another test's peerings are on the same server)
    active = [p for p in peerings if p["Status"]["Code"] == "active" and p["RequesterVpcInfo"]["VpcId"] == requester_vpc]
    assert len(active) == 1 and active[0]["VpcPeeringConnectionId"] != pcx
    new = active[0]
    assert new["AccepterVpcInfo"]["VpcId"] == accepter_vpc and new["AccepterVpcInfo"]["OwnerId"] == MEMBER
    assert new["AccepterVpcInfo"].get("Region") == MEMBER_REGION
    routes = member.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    route = next(r for r in routes if r.get("DestinationCidrBlock") == "10.20.0.0/16")
    assert route.get("VpcPeeringConnectionId") == new["VpcPeeringConnectionId"]


def test_the_shipped_mapping_requests_in_the_requesters_account_and_region() -> None:
    from connector.mapping import load_mappings

    shipped = load_mappings(None)["DeleteVpcPeeringConnection"].enrichment
    assert shipped is not None
    request = shipped.restore[0]
    assert (request.operation, request.account, request.region) == (
        "CreateVpcPeeringConnection", "{requesterAccountId}", "{requesterRegion}")
    assert all((s.account, s.region) == ("{account}", "{region}") for s in shipped.restore[1:])
