"""Real network topologies on the moto server, one per mapped deletion, and their CloudTrail record.

Each builder creates the resources (VPC, subnets, route tables, an instance), deletes one the way
the event says, and returns the record CloudTrail would have written (built from the mapping's
cases, with the real ids). For the two lookups that read AWS Config (moto has no Config history
of EC2 resources) it also returns the Config answer built from the resource as EC2 described it
before the deletion (tests/support/config_history.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support import config_history
from tests.support.moto import ACCOUNT_ID, REGION
from tests.support.records import make_record


@dataclass
class Scenario:
    event: str
    record: dict[str, Any]
    ids: dict[str, str]
    #: GetResourceConfigHistory answer for the deleted resource (None: no Config lookup).
    config_answer: dict[str, Any] | None = None
    config_type: str = ""
    config_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _record(event: str, request: dict[str, Any], response: dict[str, Any] | None = None) -> dict[str, Any]:
    overrides: dict[str, Any] = {"requestParameters": request, "recipientAccountId": ACCOUNT_ID, "awsRegion": REGION}
    if response is not None:
        overrides["responseElements"] = response
    return make_record(event, **overrides)


def _network(ec2: Any, cidr: str = "10.0.0.0/16") -> dict[str, str]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    prefix = cidr.rsplit(".", 2)[0]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.1.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    # An AMI id moto knows without loading its whole image catalogue (DescribeImages takes ~20 s).
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    return {"vpc": vpc, "subnet": subnet, "table": table, "instance": instance}


def nat_gateway(ec2: Any) -> Scenario:
    ids = _network(ec2)
    public = ec2.create_subnet(VpcId=ids["vpc"], CidrBlock="10.0.9.0/24")["Subnet"]["SubnetId"]
    ids["nat_subnet"] = public
    ids["allocation"] = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=ids["allocation"])["NatGateway"]
    ids["nat"] = nat["NatGatewayId"]
    ec2.create_route(RouteTableId=ids["table"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=ids["nat"])
    ec2.delete_nat_gateway(NatGatewayId=ids["nat"])
    # AWS disassociates the Elastic IP when the gateway is deleted; moto keeps the association.
    for address in ec2.describe_addresses(AllocationIds=[ids["allocation"]])["Addresses"]:
        if address.get("AssociationId"):
            ec2.disassociate_address(AssociationId=address["AssociationId"])
    record = _record("DeleteNatGateway", {"DeleteNatGatewayRequest": {"NatGatewayId": ids["nat"]}},
                     {"DeleteNatGatewayResponse": {"natGatewayId": ids["nat"]}})
    return Scenario("DeleteNatGateway", record, ids)


def network_acl_entry(ec2: Any, *, action: str = "deny", rule: int = 110) -> Scenario:
    ids = _network(ec2)
    acl = ec2.create_network_acl(VpcId=ids["vpc"])["NetworkAcl"]["NetworkAclId"]
    ids["acl"] = acl
    default_assoc = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [ids["subnet"]]}])
    association = next(a["NetworkAclAssociationId"] for n in default_assoc["NetworkAcls"]
                       for a in n["Associations"] if a["SubnetId"] == ids["subnet"])
    ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=acl)
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=rule, Egress=False, Protocol="6", RuleAction=action,
                                 CidrBlock="203.0.113.0/24", PortRange={"From": 22, "To": 22})
    before = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]
    ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=rule, Egress=False)
    after = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]
    clean = {k: v for k, v in before.items() if k != "Tags"}
    answer = config_history.history(
        config_history.item("AWS::EC2::NetworkAcl", acl, config_history.camel({k: v for k, v in after.items() if k != "Tags"}),
                            account=ACCOUNT_ID, region=REGION),
        config_history.item("AWS::EC2::NetworkAcl", acl, config_history.camel(clean), account=ACCOUNT_ID,
                            region=REGION, age_minutes=30),
    )
    record = _record("DeleteNetworkAclEntry", {"networkAclId": acl, "ruleNumber": rule, "egress": False})
    return Scenario("DeleteNetworkAclEntry", record, ids, answer, "AWS::EC2::NetworkAcl", acl)


def peering(ec2: Any) -> Scenario:
    ids = _network(ec2, "10.0.0.0/16")
    ids["peer_vpc"] = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=ids["vpc"], PeerVpcId=ids["peer_vpc"])["VpcPeeringConnection"]
    ids["pcx"] = pcx["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=ids["pcx"])
    ec2.create_route(RouteTableId=ids["table"], DestinationCidrBlock="10.1.0.0/16", VpcPeeringConnectionId=ids["pcx"])
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=ids["pcx"])
    record = _record("DeleteVpcPeeringConnection", {"vpcPeeringConnectionId": ids["pcx"]})
    return Scenario("DeleteVpcPeeringConnection", record, ids)


def network_interface(ec2: Any) -> Scenario:
    ids = _network(ec2)
    group = ec2.create_security_group(GroupName=f"appliance-{ids['vpc']}", Description="appliance", VpcId=ids["vpc"])
    ids["group"] = group["GroupId"]
    eni = ec2.create_network_interface(SubnetId=ids["subnet"], PrivateIpAddress="10.0.1.50", Groups=[ids["group"]],
                                       Description="appliance eth1")["NetworkInterface"]
    ids["eni"] = eni["NetworkInterfaceId"]
    # No route through the interface: moto answers DescribeRouteTables with HTTP 500 once a route's
    # target interface is deleted (AWS shows the route as blackhole).
    before = ec2.describe_network_interfaces(NetworkInterfaceIds=[ids["eni"]])["NetworkInterfaces"][0]
    ec2.delete_network_interface(NetworkInterfaceId=ids["eni"])
    clean = {k: v for k, v in before.items() if k not in ("TagSet", "Tags")}
    answer = config_history.history(
        config_history.item("AWS::EC2::NetworkInterface", ids["eni"], None, account=ACCOUNT_ID, region=REGION,
                            status="ResourceDeleted"),
        config_history.item("AWS::EC2::NetworkInterface", ids["eni"], config_history.camel(clean), account=ACCOUNT_ID,
                            region=REGION, age_minutes=30),
    )
    record = _record("DeleteNetworkInterface", {"networkInterfaceId": ids["eni"]})
    return Scenario("DeleteNetworkInterface", record, ids, answer, "AWS::EC2::NetworkInterface", ids["eni"])


def internet_gateway(ec2: Any) -> Scenario:
    ids = _network(ec2)
    ids["igw"] = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=ids["igw"], VpcId=ids["vpc"])
    ec2.create_route(RouteTableId=ids["table"], DestinationCidrBlock="0.0.0.0/0", GatewayId=ids["igw"])
    ec2.detach_internet_gateway(InternetGatewayId=ids["igw"], VpcId=ids["vpc"])
    record = _record("DetachInternetGateway", {"internetGatewayId": ids["igw"], "vpcId": ids["vpc"]})
    return Scenario("DetachInternetGateway", record, ids)


BUILDERS: dict[str, Callable[[Any], Scenario]] = {
    "DeleteNatGateway": nat_gateway,
    "DeleteNetworkAclEntry": network_acl_entry,
    "DeleteVpcPeeringConnection": peering,
    "DeleteNetworkInterface": network_interface,
    "DetachInternetGateway": internet_gateway,
}
